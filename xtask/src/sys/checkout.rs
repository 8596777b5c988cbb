//! The checkout guard: a binary built from another checkout's sources (two checkouts
//! sharing one `CARGO_TARGET_DIR`: cargo counts an identical checkout's build as fresh)
//! would read and write that other checkout's files, so it refuses to run.

use std::path::{Path, PathBuf};

use super::error::UserError;

/// Why this binary must not run here, if it must not: `cargo run` says which package it
/// ran (`CARGO_MANIFEST_DIR`), and the library records the one it was built from.
pub fn checkout_mismatch(built_from: &Path, running_for: Option<&Path>) -> Option<String> {
    let running_for = running_for?;
    let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    };
    if same(built_from, running_for) {
        return None;
    }
    Some(format!(
        "this `cargo xtask` binary was built from {}, not from {} (checkouts sharing a target directory): rebuild it here with `touch {}/src/lib.rs` and run again, or give each checkout its own CARGO_TARGET_DIR",
        built_from.display(),
        running_for.display(),
        running_for.display()
    ))
}

/// Refuses to run for another checkout than the one this binary was built from.
pub fn ensure_right_checkout() -> Result<(), UserError> {
    let running_for = std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from);
    match checkout_mismatch(Path::new(env!("CARGO_MANIFEST_DIR")), running_for.as_deref()) {
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
}
