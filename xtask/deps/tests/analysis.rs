//! The analysis end to end on fixture workspaces (`cargo metadata` offline, module
//! walking, classification, savings, reports, the caches, bad input) and on this
//! repository itself.

mod support;

use std::path::Path;

use support::{Fixture, TRIVIAL, class_of, removal_fixture};
use xtask_deps::analyze::Class;
use xtask_deps::{Format, analyze_workspace, load, render, report, resolve_manifest, savings};
use xtask_sys::error::UserError;

/// One member exercising every rule of the analysis.
fn rules_fixture() -> Fixture {
    let fx = Fixture::new("rules");
    // Plain `[dependencies]` entries on trivial crates, in the manifest's order.
    let plain = [
        "bare",
        "used_via_use",
        "ext_extern",
        "aliased",
        "derive_only",
        "mac",
        "mac_use",
        "test_only",
        "tokio",
        "commented",
        "stringy",
        "shadowed",
        "unused_plain",
        "in_tests_dir",
        "in_example",
        "attr_string",
        "nested_mod",
        "path_attr",
        "test_mod_file",
        "unreached",
        "ignored_unused",
        "ignored_used",
    ];
    // ...and the trivial crates declared another way (renamed, dev, build, target-specific,
    // optional, through the workspace).
    for dir in plain.iter().chain(&[
        "renamed",
        "doc_only",
        "build_used",
        "build_unused",
        "dev_cfg_test",
        "unix_used",
        "win_unused",
        "readme_only",
        "opt",
        "ws_used",
        "ws_dead",
    ]) {
        fx.ext(dir, "", TRIVIAL);
    }
    fx.ext("hy_phen", "hy-phen", TRIVIAL)
        .ext("odd_lib", "odd-lib\n[lib]\nname = \"strange\"\n", TRIVIAL)
        .ext("dup1", "dup", TRIVIAL)
        .ext("dup2", "dup\nversion = \"0.2.0\"", TRIVIAL)
        .ext("pm", "pm\n[lib]\nproc-macro = true\n", "")
        .ext("native", "native\nlinks = \"nativelib\"\nbuild = \"build.rs\"\n", TRIVIAL)
        .ext("toolbin", "", "");
    // A package with only a binary: no src/lib.rs, so cargo finds no library.
    std::fs::remove_file(fx.dir.join("ext/toolbin/src/lib.rs")).unwrap();
    std::fs::write(fx.dir.join("ext/toolbin/src/main.rs"), "fn main() {}\n").unwrap();
    let dep = |d: &str| format!("{d} = {{ path = \"../../ext/{d}\" }}\n");
    let mut deps = String::new();
    for d in plain.iter().chain(&["pm", "native"]) {
        deps.push_str(&dep(d));
    }
    deps.push_str("renamed_key = { package = \"renamed\", path = \"../../ext/renamed\" }\n");
    deps.push_str("hy-phen = { path = \"../../ext/hy_phen\" }\n");
    deps.push_str("odd-lib = { path = \"../../ext/odd_lib\" }\n");
    deps.push_str("dup_old = { package = \"dup\", path = \"../../ext/dup1\" }\n");
    deps.push_str("dup_new = { package = \"dup\", path = \"../../ext/dup2\" }\n");
    deps.push_str("opt = { path = \"../../ext/opt\", optional = true }\n");
    deps.push_str("ws_used = { workspace = true }\nws_dead = { workspace = true }\n");
    let manifest = format!(
        "[package]\nname = \"app\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\n{deps}\n\
         [dev-dependencies]\n{}{}{}\n[build-dependencies]\n{}{}\n\
         [target.'cfg(unix)'.dependencies]\n{}\n[target.'cfg(windows)'.dependencies]\n{}\n\
         [features]\nextra = [\"dep:opt\"]\n\n\
         [package.metadata.cargo-machete]\nignored = [\"ignored_unused\"]\n[package.metadata.cargo-shear]\nignored = [\"ignored_used\"]\n",
        dep("doc_only") + &dep("readme_only"),
        dep("dev_cfg_test"),
        "toolbin = { path = \"../../ext/toolbin\" }\n",
        dep("build_used"),
        dep("build_unused"),
        dep("unix_used"),
        dep("win_unused"),
    );
    fx.file(
        "Cargo.toml",
        "[workspace]\nmembers = [\"app\"]\nresolver = \"2\"\n\n[workspace.dependencies]\n\
         ws_used = { path = \"../ext/ws_used\" }\nws_dead = { path = \"../ext/ws_dead\" }\norphan = \"1\"\n",
    )
    .file("app/Cargo.toml", &manifest)
    .file(
        "app/src/lib.rs",
        r##"//! The app.
//!
//! ```
//! doc_only::f();
//! ```
#![doc = include_str!("../README.md")]
#[macro_use]
extern crate mac_use;
extern crate ext_extern;
use aliased as al;
use used_via_use::f as g;
use renamed_key::f as h;
use ws_used::f as w;

mod shadowed;
mod nested_mod;
#[path = "elsewhere/custom.rs"]
mod custom;

/// A bare path, a macro path, a derive, an attribute string and a target-specific crate.
#[derive(Clone, derive_only::Thing)]
pub struct S {
    #[serde(with = "attr_string::module")]
    pub x: u8,
}

pub fn run() {
    bare::f();
    mac::make!();
    make!();
    al::f();
    g();
    h();
    w();
    hy_phen::f();
    strange::f();
    dup_new::f();
    unix_used::f();
    ignored_used::f();
    let my_tokio_thing = 1; // commented::f() is only a comment
    let s = "stringy::f()";
    shadowed::f();
    let _ = (my_tokio_thing, s);
}

#[cfg(test)]
mod tests {
    #[test]
    fn t() {
        test_only::f();
        dev_cfg_test::f();
    }
}
"##,
    )
    .file("app/README.md", "# App\n\n```\nreadme_only::f();\n```\n")
    .file("app/src/shadowed.rs", "pub fn f() {}\n")
    .file("app/src/nested_mod.rs", "mod inner;\n#[cfg(test)]\nmod tests;\n")
    .file("app/src/nested_mod/inner.rs", "pub fn f() { nested_mod::f(); }\n")
    .file("app/src/nested_mod/tests.rs", "fn t() { test_mod_file::f(); }\n")
    .file("app/src/elsewhere/custom.rs", "pub fn f() { path_attr::f(); }\n")
    .file("app/src/not_a_module.rs", "pub fn f() { unreached::f(); }\n")
    .file("app/build.rs", "fn main() { build_used::f(); }\n")
    .file("app/tests/it.rs", "#[test]\nfn t() { in_tests_dir::f(); }\n")
    .file("app/examples/ex.rs", "fn main() { in_example::f(); }\n");
    fx
}

#[test]
fn every_rule_on_one_member() {
    let fx = rules_fixture();
    let a = fx.analyze();
    let c = |key: &str| class_of(&a, "app", key, "dependencies");
    for used in [
        "bare",
        "used_via_use",
        "renamed_key",
        "ext_extern",
        "aliased",
        "derive_only",
        "mac",
        "mac_use",
        "hy-phen",
        "odd-lib",
        "dup_new",
        "ws_used",
        "attr_string",
        "nested_mod",
        "path_attr",
        "ignored_used",
    ] {
        assert_eq!(c(used).0, "used", "{used}: {:?}", c(used));
    }
    for unused in
        ["tokio", "commented", "stringy", "shadowed", "unused_plain", "dup_old", "ws_dead"]
    {
        assert_eq!(c(unused).0, "verified-unused", "{unused}: {:?}", c(unused));
    }
    for misplaced in ["test_only", "in_tests_dir", "in_example", "test_mod_file"] {
        assert_eq!(c(misplaced).0, "misplaced", "{misplaced}: {:?}", c(misplaced));
    }
    assert_eq!(c("bare").1, "app/src/lib.rs:28");
    // No `mod` reaches `not_a_module.rs`, but a macro may declare it: it is scanned too,
    // never the ground for a "verified unused".
    assert_eq!(c("unreached"), ("used".into(), "app/src/not_a_module.rs:1".into()));
    assert_eq!(
        c("in_tests_dir").1.split(" (first at ").nth(1).unwrap(),
        "app/tests/it.rs:2); belongs in [dev-dependencies]"
    );
    assert!(c("pm").1.starts_with("proc-macro"), "{:?}", c("pm"));
    assert!(c("native").1.contains("`nativelib`"), "{:?}", c("native"));
    assert_eq!(
        c("opt"),
        ("needs-investigation".into(), "optional, enabled only by feature(s) extra".into())
    );
    assert_eq!(
        c("ignored_unused"),
        ("needs-investigation".into(), "ignored by package.metadata.cargo-machete".into())
    );
    assert!(
        a.warnings
            .iter()
            .any(|w| w.contains("`ignored_used` is listed in package.metadata.cargo-shear")),
        "{:?}",
        a.warnings
    );

    let dev = |key: &str| class_of(&a, "app", key, "dev-dependencies");
    assert_eq!(
        dev("doc_only"),
        ("used".into(), "app/src/lib.rs:4".into()),
        "a doc test is dev usage"
    );
    assert_eq!(dev("dev_cfg_test").0, "used");
    assert_eq!(
        dev("readme_only"),
        ("used".into(), "app/README.md:4".into()),
        "README doc tests count"
    );
    assert!(dev("toolbin").1.contains("no library target"), "{:?}", dev("toolbin"));
    let build = |key: &str| class_of(&a, "app", key, "build-dependencies");
    assert_eq!(build("build_used"), ("used".into(), "app/build.rs:1".into()));
    assert_eq!(build("build_unused").0, "verified-unused");
    assert_eq!(class_of(&a, "app", "unix_used", "cfg(unix).dependencies").0, "used");
    assert_eq!(class_of(&a, "app", "win_unused", "cfg(windows).dependencies").0, "verified-unused");

    let ws = |key: &str| class_of(&a, "workspace", key, "workspace");
    assert_eq!(ws("ws_used").0, "used");
    assert_eq!(
        ws("orphan"),
        ("verified-unused".into(), "no member inherits it (`workspace = true`)".into())
    );
    assert_eq!(ws("ws_dead").0, "verified-unused", "inherited only by an unused declaration");
}

#[test]
fn report_formats_name_every_finding() {
    let fx = rules_fixture();
    let a = fx.analyze();
    let text = render(&a, Format::Text);
    assert!(text.contains("app (app/Cargo.toml)"), "{text}");
    assert!(
        text.lines().any(|l| l.contains("unused_plain") && l.contains("verified-unused")),
        "{text}"
    );
    let summary = text.lines().last().unwrap();
    assert!(
        summary.starts_with(&format!("{} dependency declarations analyzed, ", a.declarations())),
        "{summary}"
    );
    let json: serde_json::Value = serde_json::from_str(&render(&a, Format::Json)).unwrap();
    let deps = json["members"][0]["dependencies"].as_array().unwrap();
    let bare = deps.iter().find(|d| d["key"] == "bare").unwrap();
    assert_eq!(bare["location"]["file"], "app/src/lib.rs");
    assert_eq!(json["summary"]["verified_unused"], a.count(&Class::VerifiedUnused));
    let md = report::markdown(&a);
    for section in [
        "## Verified Unused",
        "## Likely Unused",
        "## Needs Investigation",
        "## Methodology",
        "## Limitations",
    ] {
        assert!(md.contains(section), "{section}");
    }
    let verified = md.split("## Likely Unused").next().unwrap();
    assert!(verified.contains("`unused_plain`") && !verified.contains("`bare`"));
    let likely = md
        .split("## Likely Unused")
        .nth(1)
        .unwrap()
        .split("## Needs Investigation")
        .next()
        .unwrap();
    assert!(likely.contains("`test_only`") && likely.contains("`toolbin`"), "{likely}");
}

#[test]
fn each_finding_shows_what_its_removal_saves_timed_by_cargos_report() {
    let fx = removal_fixture("saving");
    // `gone` pulls in `deep`, which nothing else needs; `used` needs `shared`, and so
    // would `gone`.
    fx.ext("deep", "", "pub fn f() {}\n").ext("shared", "", "pub fn f() {}\n");
    fx.ext(
        "gone",
        "gone\n[dependencies]\ndeep = { path = \"../deep\" }\nshared = { path = \"../shared\" }",
        "pub fn f() {}\n",
    );
    fx.ext(
        "used",
        "used\n[features]\nextra = []\n[dependencies]\nshared = { path = \"../shared\" }",
        "pub fn f() -> u8 { 1 }\n",
    );
    fx.file(
        "target/cargo-timings/cargo-timing.html",
        r#"<script>const UNIT_DATA = [
{"i": 0, "name": "gone", "version": "0.1.0", "mode": "todo", "target": "", "start": 0.0, "duration": 1.25},
{"i": 1, "name": "deep", "version": "0.1.0", "mode": "todo", "target": "", "start": 0.0, "duration": 2.0},
{"i": 2, "name": "shared", "version": "0.1.0", "mode": "todo", "target": "", "start": 0.0, "duration": 9.0}
];</script>"#,
    );
    let ws = fx.load();
    let mut a = analyze_workspace(&ws);
    let report = savings::measure(&ws, &mut a, true).unwrap();
    assert!(report.is_some_and(|p| p.ends_with("cargo-timings/cargo-timing.html")));
    let gone = a.members[0].findings.iter().find(|f| f.key == "gone").unwrap();
    assert_eq!(gone.class, Class::VerifiedUnused);
    let saving = gone.saving.clone().unwrap();
    assert_eq!(saving.crates, ["deep v0.1.0", "gone v0.1.0"]);
    assert_eq!(saving.seconds, Some(3.25));
    // `unused` (named only by `[features]`, and nothing else depends on it) is the
    // other verified-unused one: removing both saves the three.
    let total = a.total_saving.clone().unwrap();
    assert_eq!(total.crates, ["deep v0.1.0", "gone v0.1.0", "unused v0.1.0"]);
    let text = render(&a, Format::Text);
    assert!(text.contains("[removal saves 2 crates, 3.2 s]"), "{text}");
    assert!(
        text.contains("removing the verified-unused ones saves 3 crates, 3.2 s of build time"),
        "{text}"
    );
    let json: serde_json::Value = serde_json::from_str(&render(&a, Format::Json)).unwrap();
    assert_eq!(json["summary"]["saving"]["seconds"], 3.25);
    let dep = json["members"][0]["dependencies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["key"] == "gone")
        .unwrap()
        .clone();
    assert_eq!(dep["saving"]["crates"][1], "gone v0.1.0");
    assert!(report::markdown(&a).contains("[removal saves 2 crates, 3.2 s]"));
}

#[test]
fn manifest_path_must_exist() {
    let err = resolve_manifest(Path::new("/nonexistent/dir/Cargo.toml")).unwrap_err();
    assert!(err.downcast_ref::<UserError>().is_some());
}

#[test]
fn the_resolve_cache_is_reused_and_invalidated_by_manifest_changes() {
    let fx = Fixture::new("cache");
    fx.ext("lib_pkg", "lib-pkg\n[lib]\nname = \"first\"\n", TRIVIAL);
    fx.file("Cargo.toml", "[workspace]\nmembers = [\"app\"]\nresolver = \"2\"\n")
        .file(
            "app/Cargo.toml",
            "[package]\nname = \"app\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\nlib-pkg = { path = \"../../ext/lib_pkg\" }\n",
        )
        .file("app/src/lib.rs", "pub fn f() { first::f() }\n");
    let cold = fx.analyze();
    let files = load::cache_files(&fx.manifest());
    assert_eq!(files.len(), 4);
    assert!(
        files[..3].iter().all(|f| f.is_file()),
        "the layout, the resolve facts and the resolve graph are cached: {files:?}"
    );
    assert!(!files[3].exists(), "nothing left to explain: no dependency source was read");

    let warm = fx.analyze();
    assert_eq!(cold, warm);
    assert_eq!(class_of(&warm, "app", "lib-pkg", "dependencies").0, "used");
    // The dependency's library is renamed: the cached crate name must not be used.
    fx.ext("lib_pkg", "lib-pkg\n[lib]\nname = \"second\"\n", TRIVIAL);
    assert_eq!(class_of(&fx.analyze(), "app", "lib-pkg", "dependencies").0, "verified-unused");
}

#[test]
fn a_broken_manifest_is_a_user_error() {
    let fx = Fixture::new("broken");
    fx.file("Cargo.toml", "[workspace]\nmembers = [\"app\"]\n")
        .file("app/Cargo.toml", "[package]\nname = \"app\"\nversion = \"0.1.0\"\nedition = \"2021\"\n[dependencies]\nmissing = { path = \"../nowhere\" }\n")
        .file("app/src/lib.rs", "");
    let err = load::load(&fx.manifest(), true, true).err().expect("must fail");
    let user = err.downcast_ref::<UserError>().expect("a user error (exit 2)");
    assert!(user.0.contains("Cargo.toml") && user.0.contains("fix the manifest"), "{}", user.0);
    assert!(!user.0.contains('\n'), "one line: {}", user.0);
}

#[test]
fn a_manifest_syntax_error_names_cargos_file_line_and_column() {
    let fx = Fixture::new("syntax");
    fx.file("Cargo.toml", "[workspace]\nmembers = [\"app\"]\n")
        .file("app/Cargo.toml", "[package]\nname = \"app\"\nversion = \"0.1.0\"\nedition = \"2021\"\n[dependencies]\nfoo = 5\n")
        .file("app/src/lib.rs", "");
    let err = load::load(&fx.manifest(), true, true).err().expect("must fail");
    let user = err.downcast_ref::<UserError>().expect("a user error (exit 2)");
    assert!(user.0.contains("Cargo.toml:6:7: invalid type: integer `5`"), "{}", user.0);
    assert!(!user.0.contains('\n'), "one line: {}", user.0);
}

/// The members come in the workspace's order whether this run resolved afresh (cargo
/// lists every package by id there) or read the cached layout (`--no-deps`, the members'
/// order): the report, committed and compared by a test, must not depend on the cache.
#[test]
fn members_keep_the_workspace_order_with_and_without_the_cache() {
    let fx = Fixture::new("order");
    let member = |name: &str| {
        format!("[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2021\"\n")
    };
    fx.file(
        "Cargo.toml",
        "[workspace]\nmembers = [\"zed\", \"alpha\", \"mid\"]\nresolver = \"2\"\n",
    );
    for name in ["zed", "alpha", "mid"] {
        fx.file(&format!("{name}/Cargo.toml"), &member(name))
            .file(&format!("{name}/src/lib.rs"), "");
    }
    let names = |ws: load::Workspace| ws.members.into_iter().map(|m| m.name).collect::<Vec<_>>();
    let fresh = names(load::load(&fx.manifest(), true, false).unwrap());
    let first = names(load::load(&fx.manifest(), true, true).unwrap());
    let cached = names(load::load(&fx.manifest(), true, true).unwrap());
    assert_eq!(fresh, ["zed", "alpha", "mid"]);
    assert_eq!(first, fresh, "the run that writes the cache");
    assert_eq!(cached, fresh, "the run that reads it");
}

#[test]
fn the_layout_cache_sees_new_targets_and_new_members() {
    let fx = Fixture::new("layout");
    fx.ext("d", "", TRIVIAL);
    let member = |name: &str| {
        format!(
            "[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dev-dependencies]\nd = {{ path = \"../../../ext/d\" }}\n"
        )
    };
    fx.file("Cargo.toml", "[workspace]\nmembers = [\"crates/*\"]\nresolver = \"2\"\n")
        .file("crates/a/Cargo.toml", &member("a"))
        .file("crates/a/src/lib.rs", "");
    assert_eq!(class_of(&fx.analyze(), "a", "d", "dev-dependencies").0, "verified-unused");
    assert_eq!(
        class_of(&fx.analyze(), "a", "d", "dev-dependencies").0,
        "verified-unused",
        "cached"
    );
    // A new test target (no manifest change) and a new member matching the glob.
    fx.file("crates/a/tests/t.rs", "#[test]\nfn t() { d::f() }\n");
    fx.file("crates/b/Cargo.toml", &member("b")).file("crates/b/src/lib.rs", "");
    let a = fx.analyze();
    assert_eq!(
        class_of(&a, "a", "d", "dev-dependencies"),
        ("used".into(), "crates/a/tests/t.rs:2".into())
    );
    assert_eq!(class_of(&a, "b", "d", "dev-dependencies").0, "verified-unused");
    // A test in a subdirectory (`tests/suite/main.rs`) added to an existing directory.
    fx.file("crates/b/tests/suite/other.rs", "");
    assert_eq!(class_of(&fx.analyze(), "b", "d", "dev-dependencies").0, "verified-unused");
    fx.file("crates/b/tests/suite/main.rs", "#[test]\nfn t() { d::f() }\n");
    assert_eq!(class_of(&fx.analyze(), "b", "d", "dev-dependencies").0, "used");
}

/// This repository itself: nothing verified unused or misplaced, and the committed
/// report matches the analysis, so a dependency left behind fails the suite.
#[test]
fn this_workspace_has_no_unused_dependencies_and_its_report_is_current() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let ws = load::load(&root.join("Cargo.toml"), false, true).unwrap();
    let analysis = analyze_workspace(&ws);
    assert_eq!(
        analysis.failing(),
        0,
        "unused or misplaced dependencies:\n{}\nfix with `cargo xtask deps --verified-only --fix-misplaced`",
        report::text(&analysis)
    );
    let committed =
        std::fs::read_to_string(root.join("docs/analysis/unused-dependencies-analysis.md"))
            .unwrap_or_default();
    assert!(
        committed == report::markdown(&analysis),
        "docs/analysis/unused-dependencies-analysis.md is stale: run `cargo xtask deps --report`"
    );
}

/// `feature-only` comes from the resolve graph, only where features can unify: `app`
/// gets `x`'s feature `f` only through `y` (named nowhere), whose `z` asks for it, while
/// `app` also depends on `x` itself; `alone` is declared with features that nothing else
/// depends on; `ws-hack`, cargo-hakari's workspace-hack crate, declares `lonely` only to
/// unify features (hakari manages that entry: never claimed).
#[test]
fn feature_only_is_found_in_the_resolve_graph() {
    let fx = Fixture::new("unify-graph");
    fx.ext("x", "x\n[features]\nf = []", "#[cfg(feature = \"f\")]\npub fn special() -> u8 { 1 }\n")
        .ext("z", "z\n[dependencies]\nx = { path = \"../x\", features = [\"f\"] }", TRIVIAL)
        .ext("y", "y\n[dependencies]\nz = { path = \"../z\" }", TRIVIAL)
        .ext("alone", "alone\n[features]\ng = []", TRIVIAL)
        .ext("lonely", "", TRIVIAL);
    fx.file(
        "Cargo.toml",
        "[workspace]\nmembers = [\"app\", \"ws-hack\"]\nresolver = \"2\"\n",
    )
    .file(".config/hakari.toml", "hakari-package = \"ws-hack\"\n")
    .file(
        "app/Cargo.toml",
        "[package]\nname = \"app\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\nx = { path = \"../../ext/x\" }\ny = { path = \"../../ext/y\" }\nalone = { path = \"../../ext/alone\", features = [\"g\"] }\nws-hack = { path = \"../ws-hack\" }\n",
    )
    .file("app/src/lib.rs", "pub fn f() -> u8 { x::special() }\n")
    .file(
        "ws-hack/Cargo.toml",
        "[package]\nname = \"ws-hack\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\nlonely = { path = \"../../ext/lonely\" }\n",
    )
    .file("ws-hack/src/lib.rs", "// This file is managed by hakari.\n");
    let a = fx.analyze();
    let y = class_of(&a, "app", "y", "dependencies");
    assert_eq!(y.0, "feature-only", "{y:?}");
    assert!(y.1.contains("switches on x/f"), "{}", y.1);
    let alone = class_of(&a, "app", "alone", "dependencies");
    assert_eq!(alone.0, "verified-unused", "nothing to unify with: {alone:?}");
    assert_eq!(class_of(&a, "app", "ws-hack", "dependencies").0, "feature-only");
    let lonely = class_of(&a, "ws-hack", "lonely", "dependencies");
    assert_eq!(lonely.0, "feature-only", "{lonely:?}");
    assert!(lonely.1.contains("workspace-hack crate"), "{}", lonely.1);
}

/// What a dependency's sources teach (what its macros expand to) is cached across runs:
/// a warm run opens no source file of a registry package (keyed by its package id, which
/// never changes), and a path package is keyed by its content, so an edit is seen. `log`
/// is resolved and downloaded from the registry at an exact version, as a user's build
/// would.
#[test]
fn a_warm_run_opens_no_dependency_source_and_path_packages_are_keyed_by_content() {
    let fx = Fixture::new("expansions-cache");
    fx.ext("helper", "", TRIVIAL).ext(
        "mac",
        "",
        "#[macro_export]\nmacro_rules! seven { () => { ::helper::f() } }\n",
    );
    fx.file("Cargo.toml", "[workspace]\nmembers = [\"app\"]\nresolver = \"2\"\n")
        .file(
            "app/Cargo.toml",
            "[package]\nname = \"app\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\nlog = \"=0.4.22\"\nmac = { path = \"../../ext/mac\" }\nhelper = { path = \"../../ext/helper\" }\n",
        )
        .file("app/src/lib.rs", "pub fn f() { log::info!(\"x\"); mac::seven!(); }\n");
    let load = || {
        load::load(&fx.manifest(), false, true)
            .unwrap_or_else(|e| panic!("resolving log from the registry: {e:#}"))
    };
    let cold = load();
    assert!(cold.dependency_files_read > 0, "the first run learns from log's sources");
    let helper =
        |ws: &load::Workspace| class_of(&analyze_workspace(ws), "app", "helper", "dependencies");
    assert_eq!(helper(&cold).1, "macros of `mac` expand to paths in this crate");

    let warm = load();
    assert_eq!(warm.dependency_files_read, 0, "a warm run opens no dependency source");
    assert_eq!(analyze_workspace(&warm), analyze_workspace(&cold));

    // The path package changes: what was learned from it is not used any more.
    fx.ext("mac", "", "#[macro_export]\nmacro_rules! seven { () => { 7 } }\n");
    assert_eq!(helper(&load()).0, "verified-unused");
}

/// A plain run whose inputs are all unchanged prints the kept output again; an edit is
/// analysed. Nothing is kept from a run whose inputs had not settled (the fixture was
/// just written, the first run wrote its caches), so the test waits that out once. The
/// kept inputs name every kind of file the analysis reads; `replay`'s own test shows
/// that a change to any of them is a miss.
#[test]
fn a_plain_run_is_replayed_only_while_every_input_is_unchanged() {
    use xtask_deps::replay::Replay;
    use xtask_deps::{Served, analyze_plain, inputs};
    let fx = Fixture::new("replay");
    fx.ext("d", "", TRIVIAL).ext("u", "", TRIVIAL);
    fx.file("Cargo.toml", "[workspace]\nmembers = [\"app\"]\nresolver = \"2\"\n")
        .file(
            "app/Cargo.toml",
            "[package]\nname = \"app\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\nd = { path = \"../../ext/d\" }\nu = { path = \"../../ext/u\" }\n",
        )
        .file("app/src/lib.rs", "mod inner;\npub fn f() { d::f() }\n")
        .file("app/src/inner.rs", "pub fn g() {}\n")
        .file("app/src/generated/by_a_macro.rs", "pub fn h() {}\n");
    let plain = |use_cache| analyze_plain(&fx.manifest(), true, use_cache, Format::Json).unwrap();
    let replay = Replay::new(&fx.manifest(), true).unwrap();

    let (first, served) = plain(true);
    assert_eq!(served, Served::Analysed);
    assert!(!first.failing || first.printed.contains("verified-unused"));
    assert!(!replay.path().exists(), "inputs written just now are not trusted");
    std::thread::sleep(inputs::SETTLE + std::time::Duration::from_millis(100));
    assert_eq!(plain(true), (first.clone(), Served::Analysed), "kept for the next run");
    assert_eq!(plain(true), (first.clone(), Served::Replayed));
    assert_eq!(plain(false), (first.clone(), Served::Analysed), "--no-cache analyses");
    assert_eq!(plain(true).1, Served::Replayed, "--no-cache left the caches as they were");

    let stored = replay.stored_inputs();
    let ws = fx.dir.join("ws");
    for expected in [
        ws.join("Cargo.toml"),
        ws.join("Cargo.lock"),
        ws.join("app/Cargo.toml"),
        ws.join("app/src/lib.rs"),
        ws.join("app/src/inner.rs"),
        ws.join("app/src/generated"),
        ws.join("app/src/generated/by_a_macro.rs"),
        ws.join("app/tests"),
        fx.dir.join("ext/u/Cargo.toml"),
    ] {
        assert!(stored.contains(&expected), "{} among the kept inputs", expected.display());
    }

    // The layout cache alone is lost: the run that asks cargo again keeps it, though the
    // resolve cache is current, so the runs after it start no cargo.
    let layout = load::cache_files(&fx.manifest())[0].clone();
    std::fs::remove_file(&layout).unwrap();
    assert_eq!(plain(true), (first.clone(), Served::Analysed));
    assert!(layout.is_file(), "{} written again", layout.display());

    // `u` gets used in a file a `mod` reaches: analysed again, and the output says so.
    fx.file("app/src/inner.rs", "pub fn g() { u::f() }\n");
    let (after, served) = plain(true);
    assert_eq!(served, Served::Analysed);
    assert_ne!(after, first);
    assert!(!after.failing, "nothing unused any more: {}", after.printed);
}
