//! The machine xtask runs on: programs on PATH, and whether we are root.

use std::path::PathBuf;

/// The file `program` names on PATH, if any.
pub fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(program)).find(|p| p.is_file())
}

/// Whether we run as root (then PostgreSQL needs another user, and xtask may install
/// system packages).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}
