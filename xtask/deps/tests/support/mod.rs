//! What the integration tests share: fixture workspaces built in temp dirs (members,
//! and "external" crates as tiny path crates outside the workspace, so nothing touches
//! the network and builds are fast; every cargo run uses the fixture's own target dir),
//! and the findings read back as `(class, evidence)` per declaration.

#![allow(dead_code)] // each test binary uses part of it

use std::collections::BTreeMap;
use std::path::PathBuf;

use xtask_deps::analyze::Analysis;
use xtask_deps::analyze_workspace;
use xtask_deps::load;
use xtask_deps::verify::Cargo;

pub struct Fixture {
    pub dir: PathBuf,
}

impl Fixture {
    pub fn new(name: &str) -> Fixture {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("xtask-deps-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("ws")).unwrap();
        Fixture { dir }
    }

    /// Writes `ws/<rel>`.
    pub fn file(&self, rel: &str, contents: &str) -> &Self {
        let path = self.dir.join("ws").join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, contents).unwrap();
        self
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.dir.join("ws").join(rel)).unwrap()
    }

    /// An "external" crate at `ext/<dir>` (referenced as `path = "../../ext/<dir>"` from
    /// a member one level down).
    pub fn ext(&self, dir: &str, manifest_extra: &str, lib: &str) -> &Self {
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

    pub fn manifest(&self) -> PathBuf {
        self.dir.join("ws/Cargo.toml")
    }

    pub fn load(&self) -> load::Workspace {
        load::load(&self.manifest(), true, true).unwrap()
    }

    pub fn analyze(&self) -> Analysis {
        analyze_workspace(&self.load())
    }

    pub fn cargo(&self) -> Cargo {
        Cargo {
            manifest: self.manifest(),
            target_dir: Some(self.dir.join("target")),
            offline: true,
        }
    }

    pub fn snapshot(&self) -> BTreeMap<PathBuf, Vec<u8>> {
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
        if let Some(replay) = xtask_deps::replay::Replay::new(&self.manifest(), true) {
            let _ = std::fs::remove_file(replay.path());
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

pub fn class_of(a: &Analysis, member: &str, key: &str, table: &str) -> (String, String) {
    classes(a)
        .get(&(member.into(), key.into(), table.into()))
        .cloned()
        .unwrap_or_else(|| panic!("no finding for {member} {key} {table}: {:#?}", classes(a)))
}

pub const TRIVIAL: &str = "pub fn f() {}\n#[macro_export]\nmacro_rules! make { () => { 1 } }\n";

/// A small buildable workspace: `app` uses `used`, not `unused` (named by a feature
/// through `unused/extra`), and inherits `gone` from the workspace without using it.
pub fn removal_fixture(name: &str) -> Fixture {
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
