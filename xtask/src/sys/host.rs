//! The machine xtask runs on: programs on PATH, and whether we are root.

use std::ffi::OsStr;
use std::path::PathBuf;

/// The file `program` names on PATH, if any.
pub fn which(program: &str) -> Option<PathBuf> {
    which_in(program.as_ref(), &std::env::var_os("PATH")?)
}

/// The file `program` names in `search_path` (a PATH-like list of directories), if any.
pub fn which_in(program: &OsStr, search_path: &OsStr) -> Option<PathBuf> {
    std::env::split_paths(search_path).map(|dir| dir.join(program)).find(|p| p.is_file())
}

/// Whether we run as root (then PostgreSQL needs another user, and xtask may install
/// system packages).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}
