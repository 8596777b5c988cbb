//! Where things are: the workspace root, the target directory, xtask's scratch space,
//! paths for messages, and stable names derived from paths. Every task resolves its
//! paths from here, so it works from any subdirectory.

use std::path::{Path, PathBuf};

/// The workspace root: the parent of this crate's manifest directory.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

/// The cargo target directory (`CARGO_TARGET_DIR` when set, else `<root>/target`).
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() { dir } else { root().join(dir) }
        }
        None => root().join("target"),
    }
}

/// Scratch space owned by xtask (`target/xtask`): state files, logs, timings.
pub fn xtask_dir() -> PathBuf {
    target_dir().join("xtask")
}

/// xtask's cache for this account, shared by every checkout (tools it installs itself):
/// `$XDG_CACHE_HOME/tasker-xtask`, else `$HOME/.cache/tasker-xtask`; none without either.
pub fn user_cache_dir() -> Option<PathBuf> {
    cache_dir_from(std::env::var_os("XDG_CACHE_HOME"), std::env::var_os("HOME"))
}

/// [`user_cache_dir`] from the two variables. The XDG base directory rule: a relative
/// `XDG_CACHE_HOME` is ignored, as is an empty or relative `HOME`.
pub fn cache_dir_from(
    xdg_cache_home: Option<std::ffi::OsString>,
    home: Option<std::ffi::OsString>,
) -> Option<PathBuf> {
    let absolute =
        |value: Option<std::ffi::OsString>| value.map(PathBuf::from).filter(|p| p.is_absolute());
    absolute(xdg_cache_home)
        .or_else(|| absolute(home).map(|home| home.join(".cache")))
        .map(|cache| cache.join("tasker-xtask"))
}

/// The workflow files of the repository (`.github/workflows/*.yml`), sorted.
pub fn workflow_files() -> Vec<PathBuf> {
    let dir = root().join(".github/workflows");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml" || e == "yaml"))
        .collect();
    files.sort();
    files
}

/// `path` relative to the workspace root when it is inside it, for messages.
pub fn display_path(path: &Path) -> String {
    let root = root();
    path.strip_prefix(&root).unwrap_or(path).display().to_string()
}

/// A path the user typed, made absolute against where they stand.
pub fn absolute(path: PathBuf) -> PathBuf {
    if path.is_absolute() {
        path
    } else {
        std::env::current_dir().map(|d| d.join(&path)).unwrap_or(path)
    }
}

/// A stable 16-hex-digit hash of `text` (FNV-1a), for names derived from paths or
/// inputs: the same text gives the same name on every run and machine.
pub fn short_hash(text: &str) -> String {
    let hash =
        text.bytes().fold(0xcbf29ce484222325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100000001b3));
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_user_cache_follows_xdg_then_home() {
        let dir = |xdg: Option<&str>, home: Option<&str>| {
            cache_dir_from(xdg.map(Into::into), home.map(Into::into))
        };
        let expect = |p: &str| Some(PathBuf::from(p));
        assert_eq!(dir(Some("/x/cache"), Some("/h")), expect("/x/cache/tasker-xtask"));
        assert_eq!(dir(None, Some("/h")), expect("/h/.cache/tasker-xtask"));
        // Relative or empty values are ignored, as the XDG base directory rule says.
        assert_eq!(dir(Some("cache"), Some("/h")), expect("/h/.cache/tasker-xtask"));
        assert_eq!(dir(Some(""), Some("/h")), expect("/h/.cache/tasker-xtask"));
        assert_eq!(dir(None, Some("")), None);
        assert_eq!(dir(None, None), None);
    }

    #[test]
    fn root_holds_the_workspace_manifest() {
        let manifest = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
        assert!(manifest.contains("[workspace]"));
    }
}
