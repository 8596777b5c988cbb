//! The compiler tier (rustc's `unused_crate_dependencies` lint over one `cargo check`)
//! beside the static scan, on the cases only compiling settles: macros, derives,
//! generated code, and real registry crates.

mod support;

use support::{Fixture, class_of};
use xtask_deps::analyze::{Analysis, Verdict};
use xtask_deps::verify::Cargo;
use xtask_deps::{analyze_workspace, bench, compiler, load, report};
use xtask_sys::error::UserError;

/// The cases a scan of the sources cannot settle, for both tiers: the buildable
/// workspace `cargo xtask deps bench` compares the tiers on.
fn compiler_fixture(name: &str) -> Fixture {
    let fx = Fixture::new(name);
    bench::generate_cases(&fx.dir).unwrap();
    fx
}

#[test]
fn the_compiler_tier_sees_macros_derives_and_generated_code_and_restores_the_manifests() {
    let fx = compiler_fixture("compiler");
    // The fixture's own `target/`, where the static scan looks for generated code too.
    let cargo = Cargo { target_dir: None, ..fx.cargo() };
    let ws = fx.load();
    let stat = analyze_workspace(&ws);
    let c = |a: &Analysis, key: &str| class_of(a, "app", key, "dependencies").0;
    // What the static scan alone says before anything was built: the generated code is
    // not there yet, so every normal dependency could be named by it.
    assert_eq!(c(&stat, "helper"), "needs-investigation");
    assert_eq!(c(&stat, "genunused"), "needs-investigation");
    assert_eq!(c(&stat, "genused"), "needs-investigation", "generated code not built yet");
    let hello = class_of(&stat, "app", "hello", "dependencies");
    assert_eq!(hello.0, "used", "named only in tests, but `hello_derive` expands to it");
    assert!(hello.1.contains("macros of `hello_derive`"), "{}", hello.1);
    assert_eq!(c(&stat, "pm_unused"), "needs-investigation");
    // Declared with features, but nothing else in the graph depends on it: no
    // unification, an ordinary finding (here cautious until the generated code is read).
    assert_eq!(c(&stat, "featured"), "needs-investigation");
    // `y` is there only so that `app` gets `x`'s feature `f`: found in the resolve graph.
    let y = class_of(&stat, "app", "y", "dependencies");
    assert_eq!(y.0, "feature-only", "{y:?}");
    assert!(y.1.contains("switches on x/f"), "{}", y.1);

    let manifests = |fx: &Fixture| (fx.read("Cargo.toml"), fx.read("app/Cargo.toml"));
    let before = manifests(&fx);
    let combined = compiler::confirm(&ws, stat, &cargo).unwrap();
    assert_eq!(manifests(&fx), before, "the lint was turned on only for the run");
    let verdict = |key: &str, table: &str| {
        combined.members[0]
            .findings
            .iter()
            .find(|f| f.key == key && f.table.toml_name() == table)
            .and_then(|f| f.compiler.clone())
    };
    assert_eq!(c(&combined, "helper"), "used");
    assert_eq!(c(&combined, "hello"), "used");
    assert_eq!(c(&combined, "mac"), "used");
    assert_eq!(c(&combined, "pm_unused"), "verified-unused");
    assert_eq!(verdict("pm_unused", "dependencies"), Some(Verdict::Unused));
    assert_eq!(c(&combined, "genused"), "used");
    assert_eq!(c(&combined, "genunused"), "verified-unused", "settled by the compiler");
    assert_eq!(c(&combined, "featured"), "verified-unused", "settled by the compiler");
    assert_eq!(verdict("featured", "dependencies"), Some(Verdict::Unused));
    assert!(matches!(verdict("testing", "dev-dependencies"), Some(Verdict::Used { .. })));
    assert_eq!(verdict("devunused", "dev-dependencies"), Some(Verdict::Unused));
    assert_eq!(class_of(&combined, "app", "devunused", "dev-dependencies").0, "verified-unused");
    // The lint cannot see features: `y` stays feature-only.
    assert_eq!(verdict("y", "dependencies"), Some(Verdict::Unused));
    assert_eq!(c(&combined, "y"), "feature-only");
    assert_eq!(c(&combined, "x"), "used");
    assert_eq!(combined.compiler_confirmed(), 5, "{}", report::text(&combined));
    let text = report::text(&combined);
    assert!(text.contains("[compiler: unused]") && text.contains("compiler tier ("), "{text}");

    // Once built, the static scan reads the generated code: only what it names is kept,
    // and `helper` is kept because `mac`'s macro names it.
    let rebuilt = analyze_workspace(&fx.load());
    assert_eq!(c(&rebuilt, "genused"), "used");
    assert_eq!(c(&rebuilt, "genunused"), "verified-unused");
    let pm = class_of(&rebuilt, "app", "pm_unused", "dependencies");
    assert_eq!(pm.0, "verified-unused", "a proc-macro crate named nowhere");
    assert!(pm.1.starts_with("proc-macro crate named nowhere"), "{}", pm.1);
    let helper = class_of(&rebuilt, "app", "helper", "dependencies");
    assert_eq!(
        helper,
        ("needs-investigation".into(), "macros of `mac` expand to paths in this crate".into())
    );
    // No tier calls anything the code needs "verified unused".
    let needed = ["helper", "hello", "mac", "hello_derive", "genused", "y"];
    for a in [&combined, &rebuilt] {
        for key in needed {
            assert_ne!(c(a, key), "verified-unused", "{key}");
        }
    }
}

/// The issue's own cases with real crates.io crates, resolved and downloaded from the
/// registry as a user's first build would (never from whatever a machine happens to have
/// cached; exact versions so the resolve is the same everywhere): `log` needed only by the
/// expansion of a `warn_once!`-style macro of another crate, and `indoc`, a proc-macro crate
/// nothing names.
#[test]
fn registry_crates_a_cross_crate_macro_and_a_never_named_proc_macro_in_both_tiers() {
    let fx = Fixture::new("registry");
    fx.ext(
        "log_once",
        "",
        "#[macro_export]\nmacro_rules! warn_once { ($($t:tt)*) => { log::warn!($($t)*) } }\n",
    );
    fx.file("Cargo.toml", "[workspace]\nmembers = [\"app\"]\nresolver = \"2\"\n")
        .file(
            "app/Cargo.toml",
            "[package]\nname = \"app\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\nlog_once = { path = \"../../ext/log_once\" }\nlog = \"=0.4.22\"\nindoc = \"=2.0.5\"\n",
        )
        .file("app/src/lib.rs", "pub fn f() { log_once::warn_once!(\"once\"); }\n");
    // Online: the first resolve fetches the index and downloads both crates; the compiler
    // tier below then builds offline from what this resolve downloaded.
    let ws = load::load(&fx.manifest(), false, true)
        .unwrap_or_else(|e| panic!("resolving log and indoc from the registry: {e:#}"));
    let stat = analyze_workspace(&ws);
    let log = class_of(&stat, "app", "log", "dependencies");
    assert_eq!(
        log,
        ("needs-investigation".into(), "macros of `log_once` expand to paths in this crate".into())
    );
    let indoc = class_of(&stat, "app", "indoc", "dependencies");
    assert_eq!(indoc.0, "verified-unused", "{indoc:?}");
    assert!(indoc.1.starts_with("proc-macro crate named nowhere"), "{}", indoc.1);

    let combined = compiler::confirm(&ws, stat, &fx.cargo()).unwrap();
    assert_eq!(class_of(&combined, "app", "log", "dependencies").0, "used");
    assert_eq!(class_of(&combined, "app", "indoc", "dependencies").0, "verified-unused");
    let indoc = combined.members[0].findings.iter().find(|f| f.key == "indoc").unwrap();
    assert_eq!(indoc.compiler, Some(Verdict::Unused), "confirmed by the compiler");
}

/// A workspace that does not build is refused after one check (with the features asked
/// for), not after a second with other features: the build script counts the checks
/// (it runs again whenever the features change).
#[test]
fn a_workspace_that_does_not_build_is_refused_after_one_check() {
    let fx = Fixture::new("broken-compiler");
    fx.file("Cargo.toml", "[workspace]\nmembers = [\"app\"]\nresolver = \"2\"\n")
        .file(
            "app/Cargo.toml",
            "[package]\nname = \"app\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[features]\nextra = []\n",
        )
        .file(
            "app/build.rs",
            "use std::io::Write;\nfn main() {\n    let log = std::path::Path::new(env!(\"CARGO_MANIFEST_DIR\")).join(\"../checks.log\");\n    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();\n    writeln!(f, \"check\").unwrap();\n}\n",
        )
        .file("app/src/lib.rs", "pub fn f() -> u8 { missing_fn() }\n");
    let ws = fx.load();
    let before = fx.read("app/Cargo.toml");
    let err = compiler::confirm(&ws, analyze_workspace(&ws), &fx.cargo()).unwrap_err();
    let user = err.downcast_ref::<UserError>().expect("a user error (exit 2)");
    assert!(user.0.contains("needs a workspace that builds"), "{}", user.0);
    assert!(user.0.contains("missing_fn") && !user.0.contains('\n'), "{}", user.0);
    assert_eq!(fx.read("checks.log").lines().count(), 1, "one check, then the refusal");
    assert_eq!(fx.read("app/Cargo.toml"), before, "the manifest restored");
}

/// A crate declared both as a normal and as a dev-dependency, used only by `#[cfg(test)]`
/// code: the plain lib build's "unused" report is the normal declaration's (test-only,
/// misplaced); the test harness uses it, so the dev declaration is used.
#[test]
fn normal_and_dev_declarations_of_one_crate_get_their_own_reports() {
    let fx = Fixture::new("dev-and-normal");
    fx.ext("both", "", "pub fn f() -> u8 { 1 }\n");
    fx.file("Cargo.toml", "[workspace]\nmembers = [\"app\"]\nresolver = \"2\"\n")
        .file(
            "app/Cargo.toml",
            "[package]\nname = \"app\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\nboth = { path = \"../../ext/both\" }\n\n[dev-dependencies]\nboth = { path = \"../../ext/both\" }\n",
        )
        .file(
            "app/src/lib.rs",
            "pub fn f() -> u8 { 2 }\n\n#[cfg(test)]\nmod tests {\n    #[test]\n    fn t() { assert_eq!(both::f(), 1); }\n}\n",
        );
    let ws = fx.load();
    let combined = compiler::confirm(&ws, analyze_workspace(&ws), &fx.cargo()).unwrap();
    let finding = |table: &str| {
        combined.members[0]
            .findings
            .iter()
            .find(|f| f.key == "both" && f.table.toml_name() == table)
            .unwrap()
            .clone()
    };
    let normal = finding("dependencies");
    assert_eq!(normal.compiler, Some(Verdict::TestOnly { by: "lib (test)".into() }));
    assert_eq!(normal.class.label(), "misplaced");
    let dev = finding("dev-dependencies");
    assert_eq!(dev.compiler, Some(Verdict::Used { by: "lib (test)".into() }), "{dev:?}");
    assert_eq!(dev.class.label(), "used");
}
