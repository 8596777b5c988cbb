//! Two checkouts sharing one `CARGO_TARGET_DIR` (a common setting, and the usual one with
//! git worktrees): cargo's fingerprints are keyed by paths relative to the workspace, so
//! the second checkout's build counts as fresh and `cargo xtask` there runs the binary
//! built from the first one. That must be an error naming both, never a silent switch of checkout.
//!
//! Real clones of this repository (its committed state) and real cargo builds, in a
//! scratch directory of their own. The first build compiles xtask cold (about 20 s of
//! both cores), so the test is in the stress tier: nextest's default filter leaves it
//! out, `cargo xtask test --stress` (nightly CI) runs it.

use std::path::Path;
use std::process::{Command, Output};

fn cargo_xtask(checkout: &Path, target: &Path) -> Output {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .current_dir(checkout)
        .args(["xtask", "ci-mode", "--event-name", "push"])
        .env("CARGO_TARGET_DIR", target)
        .env_remove("CARGO_MANIFEST_DIR")
        .env_remove("GITHUB_OUTPUT")
        .output()
        .expect("cargo runs")
}

#[test]
fn a_binary_from_the_other_checkout_is_refused_not_run() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let scratch = std::env::temp_dir().join(format!("xtask-checkouts-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch).unwrap();
    let (a, b, target) = (scratch.join("a"), scratch.join("b"), scratch.join("target"));
    for clone in [&a, &b] {
        let out =
            Command::new("git").arg("clone").arg("--quiet").arg(root).arg(clone).output().unwrap();
        assert!(out.status.success(), "git clone: {}", String::from_utf8_lossy(&out.stderr));
    }
    let stderr = |out: &Output| String::from_utf8_lossy(&out.stderr).to_string();

    // The first checkout builds and runs its own binary...
    let first_a = cargo_xtask(&a, &target);
    assert!(first_a.status.success(), "{}", stderr(&first_a));
    // ...and cargo, finding the second checkout's identical build fresh (its fingerprint
    // was recorded with the first checkout's source paths), runs that same binary for b.
    let first_b = cargo_xtask(&b, &target);
    assert_eq!(first_b.status.code(), Some(2), "{}", stderr(&first_b));
    let err = stderr(&first_b);
    assert!(err.contains(&format!("was built from {}", a.join("xtask").display())), "{err}");
    assert!(err.contains(&format!("not from {}", b.join("xtask").display())), "{err}");
    assert_eq!(err.lines().filter(|line| line.starts_with("error")).count(), 1, "{err}");
    // The advice in the message works.
    let lib_rs = b.join("xtask/src/lib.rs");
    let touched = std::fs::File::options().append(true).open(&lib_rs).unwrap();
    touched.set_modified(std::time::SystemTime::now()).unwrap();
    let rebuilt_b = cargo_xtask(&b, &target);
    assert!(rebuilt_b.status.success(), "{}", stderr(&rebuilt_b));
    std::fs::remove_dir_all(&scratch).unwrap();
}
