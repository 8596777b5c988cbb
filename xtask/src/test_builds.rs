//! A check of `cargo xtask lint`: no test code in a target whose test build is off.
//!
//! A library or binary without unit tests says `test = false` in its manifest, so that
//! `cargo test` and nextest do not compile it a second time as a test harness that runs
//! nothing, and clippy does not lint that copy too (docs/analysis/ci-speed.md). A unit
//! test added to such a target later would never be compiled nor run, and nothing would
//! say so. This check says so: it walks each such target's module tree as `cargo xtask
//! deps` does and reports every piece of test-only code in it.

use std::path::Path;

use xtask_deps::meta::{self, Target};

/// One line per piece of test code in a target of the workspace at `manifest` whose test
/// build is off; paths shown relative to the workspace's root.
pub fn check(manifest: &Path) -> anyhow::Result<Vec<String>> {
    let meta = meta::run(manifest, true, true)?;
    let root = manifest.parent().unwrap_or(Path::new("."));
    let shown = |path: &Path| path.strip_prefix(root).unwrap_or(path).display().to_string();
    let mut out = Vec::new();
    for package in meta.workspace_packages() {
        for target in package.targets.iter().filter(|t| untested(t)) {
            let kind = if meta::is_lib(target) { "library" } else { "binary" };
            for (file, line) in xtask_deps::load::test_code(target.src_path.as_std_path()) {
                out.push(format!(
                    "{}:{line}: test code in the {kind} `{}` of {}, whose test build is off: \
                     it is never compiled nor run; remove `test = false` from {}",
                    shown(&file),
                    target.name,
                    package.name,
                    shown(package.manifest_path.as_std_path()),
                ));
            }
        }
    }
    Ok(out)
}

/// A library or binary that `cargo test` does not build as a test harness. (Examples and
/// benches are not tested by default; for them `test = false` hides nothing.)
fn untested(target: &Target) -> bool {
    !target.test && (meta::is_lib(target) || target.is_bin())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// A workspace of one package at a new directory: a library and a binary, each with
    /// `test = false` when `off`, the library's sources `lib_files`.
    fn workspace(name: &str, off: bool, lib_files: &[(&str, &str)]) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("xtask-test-builds-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("src")).unwrap();
        let test = if off { "test = false\n" } else { "" };
        let manifest = format!(
            "[package]\nname = \"fixture\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n\
             [lib]\n{test}\n[[bin]]\nname = \"tool\"\npath = \"src/main.rs\"\n{test}\n\
             [workspace]\n"
        );
        std::fs::write(dir.join("Cargo.toml"), manifest).unwrap();
        std::fs::write(dir.join("src/main.rs"), "fn main() {}\n").unwrap();
        for (path, text) in lib_files {
            std::fs::write(dir.join("src").join(path), text).unwrap();
        }
        dir
    }

    const TESTED_MODULE: &str = "mod inner;\npub fn f() {}\n";
    const INNER: &str =
        "pub fn g() {}\n\n#[cfg(test)]\nmod tests {\n    #[test]\n    fn t() {}\n}\n";

    #[test]
    fn test_code_in_a_target_whose_test_build_is_off_is_named_with_its_file_and_line() {
        let dir = workspace("off", true, &[("lib.rs", TESTED_MODULE), ("inner.rs", INNER)]);
        let problems = check(&dir.join("Cargo.toml")).unwrap();
        assert_eq!(problems.len(), 1, "{problems:#?}");
        assert!(
            problems[0]
                == "src/inner.rs:3: test code in the library `fixture` of fixture, whose test build is off: it is never compiled nor run; remove `test = false` from Cargo.toml",
            "{}",
            problems[0]
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn tests_where_the_test_build_is_on_and_untested_targets_without_tests_pass() {
        let on = workspace("on", false, &[("lib.rs", TESTED_MODULE), ("inner.rs", INNER)]);
        assert_eq!(check(&on.join("Cargo.toml")).unwrap(), Vec::<String>::new());
        let clean = workspace("clean", true, &[("lib.rs", "pub fn f() {}\n")]);
        assert_eq!(check(&clean.join("Cargo.toml")).unwrap(), Vec::<String>::new());
        for dir in [on, clean] {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
