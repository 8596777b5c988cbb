//! Fixture workspaces built in temp dirs: the analysis end to end (`cargo metadata`
//! offline, module walking, classification) and removals that must leave a workspace
//! that loads and builds. "External" crates are tiny path crates outside the workspace,
//! so nothing touches the network and builds are fast. Every cargo run uses the
//! fixture's own target dir.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::analyze::{Analysis, Class, Verdict};
use super::fix::{self, Outcome};
use super::load;
use super::verify::Cargo;

struct Fixture {
    dir: PathBuf,
}

impl Fixture {
    fn new(name: &str) -> Fixture {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("xtask-deps-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("ws")).unwrap();
        Fixture { dir }
    }

    /// Writes `ws/<rel>`.
    fn file(&self, rel: &str, contents: &str) -> &Self {
        let path = self.dir.join("ws").join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, contents).unwrap();
        self
    }

    fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.dir.join("ws").join(rel)).unwrap()
    }

    /// An "external" crate at `ext/<dir>` (referenced as `path = "../../ext/<dir>"` from
    /// a member one level down).
    fn ext(&self, dir: &str, manifest_extra: &str, lib: &str) -> &Self {
        let root = self.dir.join("ext").join(dir);
        std::fs::create_dir_all(root.join("src")).unwrap();
        let (name, rest) = manifest_extra.split_once('\n').unwrap_or((manifest_extra, ""));
        let name = if name.is_empty() { dir } else { name };
        let version = if rest.starts_with("version") { "" } else { "version = \"0.1.0\"\n" };
        let manifest = format!(
            "[package]\nname = \"{name}\"\n{version}edition = \"2021\"\n{rest}\n[workspace]\n"
        );
        std::fs::write(root.join("Cargo.toml"), manifest).unwrap();
        std::fs::write(root.join("src/lib.rs"), lib).unwrap();
        if rest.contains("build = ") {
            std::fs::write(root.join("build.rs"), "fn main() {}\n").unwrap();
        }
        self
    }

    fn manifest(&self) -> PathBuf {
        self.dir.join("ws/Cargo.toml")
    }

    fn load(&self) -> load::Workspace {
        load::load(&self.manifest(), true, true).unwrap()
    }

    fn analyze(&self) -> Analysis {
        super::analyze_workspace(&self.load())
    }

    fn cargo(&self) -> Cargo {
        Cargo {
            manifest: self.manifest(),
            target_dir: Some(self.dir.join("target")),
            offline: true,
        }
    }

    fn snapshot(&self) -> BTreeMap<PathBuf, Vec<u8>> {
        let mut out = BTreeMap::new();
        let mut stack = vec![self.dir.join("ws")];
        while let Some(dir) = stack.pop() {
            for e in std::fs::read_dir(dir).unwrap().flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    out.insert(p.clone(), std::fs::read(&p).unwrap());
                }
            }
        }
        out
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        // Set XTASK_DEPS_KEEP_FIXTURES to inspect a fixture (or run other tools on it).
        if std::env::var_os("XTASK_DEPS_KEEP_FIXTURES").is_some() {
            eprintln!("kept fixture {}", self.dir.display());
            return;
        }
        // The caches live in the target directory, which CARGO_TARGET_DIR may put elsewhere.
        for file in load::cache_files(&self.manifest()) {
            let _ = std::fs::remove_file(file);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `(member, key, table) -> (class, evidence)` for assertions.
fn classes(a: &Analysis) -> BTreeMap<(String, String, String), (String, String)> {
    let mut out = BTreeMap::new();
    for m in &a.members {
        for f in &m.findings {
            let table = match &f.target {
                Some(t) => format!("{t}.{}", f.table.toml_name()),
                None => f.table.toml_name().to_string(),
            };
            out.insert(
                (m.name.clone(), f.key.clone(), table),
                (f.class.label().to_string(), f.evidence.clone()),
            );
        }
    }
    for w in &a.workspace {
        out.insert(
            ("workspace".into(), w.key.clone(), "workspace".into()),
            (w.class.label().into(), w.evidence.clone()),
        );
    }
    out
}

fn class_of(a: &Analysis, member: &str, key: &str, table: &str) -> (String, String) {
    classes(a)
        .get(&(member.into(), key.into(), table.into()))
        .cloned()
        .unwrap_or_else(|| panic!("no finding for {member} {key} {table}: {:#?}", classes(a)))
}

const TRIVIAL: &str = "pub fn f() {}\n#[macro_export]\nmacro_rules! make { () => { 1 } }\n";

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
    for unused in [
        "tokio",
        "commented",
        "stringy",
        "shadowed",
        "unused_plain",
        "unreached",
        "dup_old",
        "ws_dead",
    ] {
        assert_eq!(c(unused).0, "verified-unused", "{unused}: {:?}", c(unused));
    }
    for misplaced in ["test_only", "in_tests_dir", "in_example", "test_mod_file"] {
        assert_eq!(c(misplaced).0, "misplaced", "{misplaced}: {:?}", c(misplaced));
    }
    assert_eq!(c("bare").1, "app/src/lib.rs:28");
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
    let text = super::render(&a, super::Format::Text);
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
    let json: serde_json::Value =
        serde_json::from_str(&super::render(&a, super::Format::Json)).unwrap();
    let deps = json["members"][0]["dependencies"].as_array().unwrap();
    let bare = deps.iter().find(|d| d["key"] == "bare").unwrap();
    assert_eq!(bare["location"]["file"], "app/src/lib.rs");
    assert_eq!(json["summary"]["verified_unused"], a.count(&Class::VerifiedUnused));
    let md = super::report::markdown(&a);
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

/// A small buildable workspace: `app` uses `used`, not `unused` (named by a feature
/// through `unused/extra`), and inherits `gone` from the workspace without using it.
fn removal_fixture(name: &str) -> Fixture {
    let fx = Fixture::new(name);
    fx.ext("used", "used\n[features]\nextra = []", "pub fn f() -> u8 { 1 }\n")
        .ext("unused", "unused\n[features]\nextra = []", "pub fn f() {}\n")
        .ext("gone", "", "pub fn f() {}\n")
        .ext("helper", "", "pub fn value() -> u8 { 7 }\n")
        .ext(
            "mac",
            "",
            "/// Expands to a path in `helper`, which the caller must depend on.\n#[macro_export]\nmacro_rules! seven { () => { ::helper::value() } }\n",
        )
        .ext("testing", "", "pub fn check() -> bool { true }\n");
    fx.file(
        "Cargo.toml",
        "[workspace]\nmembers = [\"app\"]\nresolver = \"2\"\n\n[workspace.dependencies]\n# kept\nused = { path = \"../ext/used\" }\n# inherited by app, used nowhere\ngone = { path = \"../ext/gone\" }\n",
    )
    .file(
        "app/Cargo.toml",
        "[package]\nname = \"app\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\n# the one we need\nused = { workspace = true }\nunused = { path = \"../../ext/unused\" } # not needed\ngone = { workspace = true }\ntesting = { path = \"../../ext/testing\" }\n\n[features]\ndefault = [\"fast\"]\nfast = [\"used/extra\", \"unused/extra\"]\nonly-unused = [\"unused/extra\"]\n",
    )
    .file("app/src/lib.rs", "pub fn f() -> u8 { used::f() }\n\n#[cfg(test)]\nmod tests {\n    #[test]\n    fn t() { assert!(testing::check()); }\n}\n");
    fx
}

#[test]
fn verified_only_removes_declarations_features_and_workspace_entries_and_the_workspace_builds() {
    let fx = removal_fixture("verified");
    let ws = fx.load();
    let a = super::analyze_workspace(&ws);
    assert_eq!(class_of(&a, "app", "gone", "dependencies").0, "verified-unused");
    // Named by features (`unused/extra`): it may be there only for them, never removed.
    assert_eq!(class_of(&a, "app", "unused", "dependencies").0, "feature-only");
    assert_eq!(class_of(&a, "app", "testing", "dependencies").0, "misplaced");

    // Dry run: nothing written.
    let before = fx.snapshot();
    fix::verified_only(&ws, &a, true, true, &fx.cargo()).unwrap();
    assert_eq!(fx.snapshot(), before, "--dry-run must not write");

    fix::verified_only(&ws, &a, true, false, &fx.cargo()).unwrap();
    assert_eq!(
        fx.read("app/Cargo.toml"),
        "[package]\nname = \"app\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\n# the one we need\nused = { workspace = true }\nunused = { path = \"../../ext/unused\" } # not needed\n\n[features]\ndefault = [\"fast\"]\nfast = [\"used/extra\", \"unused/extra\"]\nonly-unused = [\"unused/extra\"]\n\n[dev-dependencies]\ntesting = { path = \"../../ext/testing\" }\n"
    );
    assert_eq!(
        fx.read("Cargo.toml"),
        "[workspace]\nmembers = [\"app\"]\nresolver = \"2\"\n\n[workspace.dependencies]\n# kept\nused = { path = \"../ext/used\" }\n"
    );
    // The result loads and builds (verified_only checked it; check again independently),
    // and a fresh analysis finds nothing left to do.
    assert_eq!(fx.cargo().metadata().unwrap(), Ok(()));
    assert_eq!(fx.cargo().check(false).unwrap(), Ok(()));
    assert_eq!(super::analyze_workspace(&fx.load()).failing(), 0);
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
    let mut a = super::analyze_workspace(&ws);
    let report = super::savings::measure(&ws, &mut a, true).unwrap();
    assert!(report.is_some_and(|p| p.ends_with("cargo-timings/cargo-timing.html")));
    let gone = a.members[0].findings.iter().find(|f| f.key == "gone").unwrap();
    assert_eq!(gone.class, Class::VerifiedUnused);
    let saving = gone.saving.clone().unwrap();
    assert_eq!(saving.crates, ["deep v0.1.0", "gone v0.1.0"]);
    assert_eq!(saving.seconds, Some(3.25));
    let total = a.total_saving.clone().unwrap();
    assert_eq!(total.crates, saving.crates, "the only verified-unused one");
    let text = super::render(&a, super::Format::Text);
    assert!(text.contains("[removal saves 2 crates, 3.2 s]"), "{text}");
    assert!(
        text.contains("removing the verified-unused ones saves 2 crates, 3.2 s of build time"),
        "{text}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&super::render(&a, super::Format::Json)).unwrap();
    assert_eq!(json["summary"]["saving"]["seconds"], 3.25);
    let dep = json["members"][0]["dependencies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["key"] == "gone")
        .unwrap()
        .clone();
    assert_eq!(dep["saving"]["crates"][1], "gone v0.1.0");
    assert!(super::report::markdown(&a).contains("[removal saves 2 crates, 3.2 s]"));
}

#[test]
fn verified_only_restores_every_file_when_the_build_breaks() {
    let fx = removal_fixture("restore");
    // `helper` is needed only by the expansion of `mac::seven!(helper)`, which gets the
    // crate's name as an argument: no scan of either source sees a path to it, the
    // build does.
    fx.file(
        "app/Cargo.toml",
        "[package]\nname = \"app\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\nmac = { path = \"../../ext/mac\" }\nhelper = { path = \"../../ext/helper\" }\n",
    )
    .file("app/src/lib.rs", "pub fn f() -> u8 { mac::seven!(helper) }\n")
    .ext("mac", "", "#[macro_export]\nmacro_rules! seven { ($k:ident) => { $k::value() } }\n");
    fx.cargo().metadata().unwrap().unwrap(); // create Cargo.lock first: it must survive too
    let ws = fx.load();
    let a = super::analyze_workspace(&ws);
    assert_eq!(class_of(&a, "app", "helper", "dependencies").0, "verified-unused");
    let before = fx.snapshot();
    let err = fix::verified_only(&ws, &a, false, false, &fx.cargo()).unwrap_err();
    assert!(matches!(err.downcast_ref::<crate::project::Exit>(), Some(crate::project::Exit(1))));
    let after = fx.snapshot();
    let changed: Vec<_> = before.keys().filter(|k| before.get(*k) != after.get(*k)).collect();
    let manifests_and_lock: Vec<_> =
        changed.iter().filter(|p| !p.starts_with(fx.dir.join("target"))).collect();
    assert!(manifests_and_lock.is_empty(), "not restored: {manifests_and_lock:?}");
    assert!(fx.dir.join("ws/Cargo.lock").exists());
}

#[test]
fn verified_only_on_a_workspace_that_does_not_build_says_so_and_restores() {
    let fx = removal_fixture("broken-before");
    fx.file("app/src/lib.rs", "pub fn f() -> u8 { used::f() + missing_fn() }\n");
    let ws = fx.load();
    let a = super::analyze_workspace(&ws);
    let before = fx.snapshot();
    let err = fix::verified_only(&ws, &a, false, false, &fx.cargo()).unwrap_err();
    let user = err.downcast_ref::<crate::project::UserError>().expect("a user error (exit 2)");
    assert!(user.0.contains("does not build even without the removals"), "{}", user.0);
    assert!(user.0.contains("missing_fn"), "names the compiler error: {}", user.0);
    assert_eq!(fx.snapshot(), before, "every file restored, Cargo.lock included");
}

/// Two members: `app` calls `x::special()`, which exists only with `x`'s feature `f`.
/// `app` gets that feature only through `y` (declared for that alone, named nowhere);
/// `other` enables it too, so the workspace builds without `y`, but `app` alone does not.
fn unification_fixture(name: &str) -> Fixture {
    let fx = Fixture::new(name);
    fx.ext("x", "x\n[features]\nf = []", "#[cfg(feature = \"f\")]\npub fn special() -> u8 { 1 }\n")
        .ext(
            "y",
            "y\n[dependencies]\nx = { path = \"../x\", features = [\"f\"] }",
            "pub fn g() {}\n",
        );
    fx.file("Cargo.toml", "[workspace]\nmembers = [\"app\", \"other\"]\nresolver = \"2\"\n")
        .file(
            "app/Cargo.toml",
            "[package]\nname = \"app\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\nx = { path = \"../../ext/x\" }\ny = { path = \"../../ext/y\" }\n",
        )
        .file("app/src/lib.rs", "pub fn f() -> u8 { x::special() }\n")
        .file(
            "other/Cargo.toml",
            "[package]\nname = \"other\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\nx = { path = \"../../ext/x\", features = [\"f\"] }\n",
        )
        .file("other/src/lib.rs", "pub fn f() -> u8 { x::special() }\n");
    fx
}

#[test]
fn verified_only_checks_each_edited_package_alone_and_restores_when_one_breaks() {
    let fx = unification_fixture("unify");
    fx.cargo().metadata().unwrap().unwrap(); // Cargo.lock exists and must survive
    let ws = fx.load();
    let a = super::analyze_workspace(&ws);
    // Statically (and for the compiler too) `y` is unused: nothing names it.
    assert_eq!(class_of(&a, "app", "y", "dependencies").0, "verified-unused");
    let before = fx.snapshot();
    let err = fix::verified_only(&ws, &a, false, false, &fx.cargo()).unwrap_err();
    assert!(matches!(err.downcast_ref::<crate::project::Exit>(), Some(crate::project::Exit(1))));
    let message = format!("{err:#}");
    assert!(message.contains("package `app` no longer builds on its own"), "{message}");
    assert!(message.contains("special"), "names the compiler error: {message}");
    let after = fx.snapshot();
    let changed: Vec<_> = before.keys().filter(|k| before.get(*k) != after.get(*k)).collect();
    assert!(changed.is_empty(), "not restored: {changed:?}");
    // The hole this closes: without `y` the workspace check alone passes.
    std::fs::write(
        fx.dir.join("ws/app/Cargo.toml"),
        fx.read("app/Cargo.toml").replace("y = { path = \"../../ext/y\" }\n", ""),
    )
    .unwrap();
    assert_eq!(fx.cargo().check(false).unwrap(), Ok(()));
    assert!(fx.cargo().check_package("app").unwrap().is_err());
}

/// The cases a scan of the sources cannot settle, for both tiers: the buildable
/// workspace `cargo xtask deps bench` compares the tiers on.
fn compiler_fixture(name: &str) -> Fixture {
    let fx = Fixture::new(name);
    super::bench::generate_cases(&fx.dir).unwrap();
    fx
}

#[test]
fn the_compiler_tier_sees_macros_derives_and_generated_code_and_restores_the_manifests() {
    let fx = compiler_fixture("compiler");
    // The fixture's own `target/`, where the static scan looks for generated code too.
    let cargo = Cargo { target_dir: None, ..fx.cargo() };
    let ws = fx.load();
    let stat = super::analyze_workspace(&ws);
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
    assert_eq!(c(&stat, "featured"), "feature-only");

    let manifests = |fx: &Fixture| (fx.read("Cargo.toml"), fx.read("app/Cargo.toml"));
    let before = manifests(&fx);
    let combined = super::compiler::confirm(&ws, stat, &cargo).unwrap();
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
    assert_eq!(c(&combined, "featured"), "feature-only", "the lint cannot see features");
    assert_eq!(verdict("featured", "dependencies"), Some(Verdict::Unused));
    assert!(matches!(verdict("testing", "dev-dependencies"), Some(Verdict::Used { .. })));
    assert_eq!(verdict("devunused", "dev-dependencies"), Some(Verdict::Unused));
    assert_eq!(class_of(&combined, "app", "devunused", "dev-dependencies").0, "verified-unused");
    // `y` is there only so that `app` gets `x`'s feature: neither tier can see that (the
    // per-package check of --verified-only does, see above).
    assert_eq!(c(&combined, "y"), "verified-unused");
    assert_eq!(c(&combined, "x"), "used");
    assert_eq!(combined.compiler_confirmed(), 5, "{}", super::report::text(&combined));
    let text = super::report::text(&combined);
    assert!(text.contains("[compiler: unused]") && text.contains("compiler tier ("), "{text}");

    // Once built, the static scan reads the generated code: only what it names is kept,
    // and `helper` is kept because `mac`'s macro names it.
    let rebuilt = super::analyze_workspace(&fx.load());
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
    let needed = ["helper", "hello", "mac", "hello_derive", "genused", "featured"];
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
    let stat = super::analyze_workspace(&ws);
    let log = class_of(&stat, "app", "log", "dependencies");
    assert_eq!(
        log,
        ("needs-investigation".into(), "macros of `log_once` expand to paths in this crate".into())
    );
    let indoc = class_of(&stat, "app", "indoc", "dependencies");
    assert_eq!(indoc.0, "verified-unused", "{indoc:?}");
    assert!(indoc.1.starts_with("proc-macro crate named nowhere"), "{}", indoc.1);

    let combined = super::compiler::confirm(&ws, stat, &fx.cargo()).unwrap();
    assert_eq!(class_of(&combined, "app", "log", "dependencies").0, "used");
    assert_eq!(class_of(&combined, "app", "indoc", "dependencies").0, "verified-unused");
    let indoc = combined.members[0].findings.iter().find(|f| f.key == "indoc").unwrap();
    assert_eq!(indoc.compiler, Some(Verdict::Unused), "confirmed by the compiler");
}

#[test]
fn with_verification_removes_the_unused_and_keeps_the_macro_needed_with_the_reason() {
    let fx = Fixture::new("withver");
    fx.ext("helper", "", "pub fn value() -> u8 { 7 }\n")
        .ext("mac", "", "#[macro_export]\nmacro_rules! seven { () => { ::helper::value() } }\n")
        .ext("unused", "", "pub fn f() {}\n")
        .ext("testing", "", "pub fn check() -> bool { true }\n");
    fx.file("Cargo.toml", "[workspace]\nmembers = [\"app\"]\nresolver = \"2\"\n")
        .file(
            "app/Cargo.toml",
            "[package]\nname = \"app\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\nmac = { path = \"../../ext/mac\" }\nhelper = { path = \"../../ext/helper\" }\nunused = { path = \"../../ext/unused\" }\ntesting = { path = \"../../ext/testing\" }\n",
        )
        .file(
            "app/src/lib.rs",
            "pub fn f() -> u8 { mac::seven!() }\n#[cfg(test)]\nmod tests {\n    #[test]\n    fn t() { assert!(testing::check()); }\n}\n",
        );
    let ws = fx.load();
    let a = super::analyze_workspace(&ws);
    let results = fix::with_verification(&ws, &a, false, &fx.cargo()).unwrap();
    let outcome =
        |key: &str| results.iter().find(|(c, _)| c.key == key).map(|(_, o)| o.clone()).unwrap();
    assert_eq!(outcome("unused"), Outcome::Changed);
    match outcome("helper") {
        Outcome::Kept(reason) => assert!(reason.contains("helper"), "{reason}"),
        other => panic!("helper: {other:?}"),
    }
    assert_eq!(outcome("testing"), Outcome::Changed, "misplaced: moved to dev-dependencies");
    let manifest = fx.read("app/Cargo.toml");
    assert!(manifest.contains("helper = ") && !manifest.contains("unused"), "{manifest}");
    assert!(
        manifest.ends_with("[dev-dependencies]\ntesting = { path = \"../../ext/testing\" }\n"),
        "{manifest}"
    );
    assert_eq!(fx.cargo().check(false).unwrap(), Ok(()));
}

#[test]
fn manifest_path_must_exist() {
    let err = super::resolve_manifest(Path::new("/nonexistent/dir/Cargo.toml")).unwrap_err();
    assert!(err.downcast_ref::<crate::project::UserError>().is_some());
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
    assert_eq!(files.len(), 3);
    assert!(
        files.iter().all(|f| f.is_file()),
        "the layout, the resolve facts and the resolve graph are cached: {files:?}"
    );

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
    let user = err.downcast_ref::<crate::project::UserError>().expect("a user error (exit 2)");
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
    let user = err.downcast_ref::<crate::project::UserError>().expect("a user error (exit 2)");
    assert!(user.0.contains("Cargo.toml:6:7: invalid type: integer `5`"), "{}", user.0);
    assert!(!user.0.contains('\n'), "one line: {}", user.0);
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
    let root = crate::project::root();
    let ws = load::load(&root.join("Cargo.toml"), false, true).unwrap();
    let analysis = super::analyze_workspace(&ws);
    assert_eq!(
        analysis.failing(),
        0,
        "unused or misplaced dependencies:\n{}\nfix with `cargo xtask deps --verified-only --fix-misplaced`",
        super::report::text(&analysis)
    );
    let committed =
        std::fs::read_to_string(root.join("docs/analysis/unused-dependencies-analysis.md"))
            .unwrap_or_default();
    assert!(
        committed == super::report::markdown(&analysis),
        "docs/analysis/unused-dependencies-analysis.md is stale: run `cargo xtask deps --report`"
    );
}
