//! The checkout guard: a binary built from another checkout's sources (two checkouts
//! sharing one `CARGO_TARGET_DIR`: cargo counts an identical checkout's build as fresh)
//! would read and write that other checkout's files, so it refuses to run.

use std::path::{Path, PathBuf};

use super::error::UserError;

/// Why this binary must not run here, if it must not: `cargo run` says which package it
/// ran (`CARGO_MANIFEST_DIR`), and the library records the one it was built from.
pub fn checkout_mismatch(built_from: &Path, running_for: Option<&Path>) -> Option<String> {
    let running_for = running_for?;
    if same_path(built_from, running_for) {
        return None;
    }
    Some(format!(
        "this `cargo xtask` binary was built from {}, not from {} (checkouts sharing a target directory): rebuild it here with `touch {}/src/lib.rs` and run again, or give each checkout its own CARGO_TARGET_DIR",
        built_from.display(),
        running_for.display(),
        running_for.display()
    ))
}

/// Why the binary CI builds once per run (`cargo xtask ci-binary`), run directly in
/// another job, must not run in this job's workspace, if it must not: its paths are
/// compiled in, and a runner whose workspace lies elsewhere would get the wrong ones.
pub fn workspace_mismatch(built_from: &Path, workspace: Option<&Path>) -> Option<String> {
    let here = workspace?.join("xtask");
    if same_path(built_from, &here) {
        return None;
    }
    Some(format!(
        "this xtask binary was built for the workspace {}, but this job's is {}: run `cargo xtask` here instead of the binary",
        built_from.parent().unwrap_or(built_from).display(),
        workspace?.display()
    ))
}

fn same_path(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// Refuses to run for another checkout than the one this binary was built from: the
/// package `cargo run` ran, or else (the binary run directly in a CI job) the job's
/// workspace.
pub fn ensure_right_checkout() -> Result<(), UserError> {
    let built_from = Path::new(env!("CARGO_MANIFEST_DIR"));
    let why = match std::env::var_os("CARGO_MANIFEST_DIR") {
        Some(dir) => checkout_mismatch(built_from, Some(Path::new(&dir))),
        None => {
            let workspace = std::env::var_os("GITHUB_WORKSPACE").map(PathBuf::from);
            workspace_mismatch(built_from, workspace.as_deref())
        }
    };
    match why {
        Some(why) => Err(UserError(why)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_binary_built_from_another_checkout_is_refused() {
        let here = Path::new(env!("CARGO_MANIFEST_DIR"));
        assert_eq!(checkout_mismatch(here, Some(here)), None);
        assert_eq!(checkout_mismatch(here, None), None, "run directly, not by cargo run");
        let other = Path::new("/elsewhere/clone/xtask");
        let why = checkout_mismatch(here, Some(other)).unwrap();
        assert!(why.contains("was built from") && why.contains("/elsewhere/clone/xtask"), "{why}");
    }

    #[test]
    fn the_binary_built_for_a_ci_run_runs_only_in_a_workspace_at_the_same_path() {
        let built = Path::new("/home/runner/work/tasker-core/tasker-core/xtask");
        let same = Path::new("/home/runner/work/tasker-core/tasker-core");
        assert_eq!(workspace_mismatch(built, Some(same)), None);
        assert_eq!(workspace_mismatch(built, None), None, "outside GitHub Actions");
        let why = workspace_mismatch(built, Some(Path::new("/srv/runner/_work/t/t"))).unwrap();
        assert_eq!(
            why,
            "this xtask binary was built for the workspace /home/runner/work/tasker-core/tasker-core, but this job's is /srv/runner/_work/t/t: run `cargo xtask` here instead of the binary"
        );
    }
}
