//! Where things are and how to touch them safely: the workspace root, the target
//! directory, the `cargo` command, atomic file writes and the error kinds that decide
//! the exit code. Every task resolves its paths from here, so it works from any
//! subdirectory.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context as _;

/// The workspace root: the parent of this crate's manifest directory.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the workspace root")
        .to_path_buf()
}

/// Why this binary must not run here, if it must not: `cargo run` says which package it
/// ran (`CARGO_MANIFEST_DIR`), and a binary built from another checkout's sources (two
/// checkouts sharing one `CARGO_TARGET_DIR`: cargo counts an identical checkout's build as
/// fresh) would read and write that other checkout's files.
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

/// A `cargo` command: the one that runs us (`$CARGO`), run from the workspace root.
pub fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(root());
    cmd
}

/// True when `cargo nextest` runs.
pub fn nextest_installed() -> bool {
    cargo()
        .args(["nextest", "--version"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Every file named `*.<extension>` in `dir` and the directories below it, sorted; none
/// when `dir` cannot be read.
pub fn files_below(dir: &Path, extension: &str) -> Vec<PathBuf> {
    fn walk(dir: &Path, extension: &str, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, extension, out);
            } else if path.extension().is_some_and(|e| e == extension) {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(dir, extension, &mut files);
    files.sort();
    files
}

/// `path` relative to the workspace root when it is inside it, for messages.
pub fn display_path(path: &Path) -> String {
    let root = root();
    path.strip_prefix(&root).unwrap_or(path).display().to_string()
}

/// Writes `contents` to `path` atomically: a temporary file in the same directory is
/// renamed over the target, so a reader never sees a half-written file and a failure
/// leaves the old file untouched.
pub fn write_atomic(path: &Path, contents: impl AsRef<[u8]>) -> anyhow::Result<()> {
    write_atomic_with_mode(path, contents.as_ref(), 0o666)
}

/// [`write_atomic`] for a file that holds a secret (a database URL with its password):
/// readable and writable by its owner only, from the moment it exists.
pub fn write_private(path: &Path, contents: impl AsRef<[u8]>) -> anyhow::Result<()> {
    write_atomic_with_mode(path, contents.as_ref(), 0o600)
}

fn write_atomic_with_mode(path: &Path, contents: &[u8], mode: u32) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let file_name = path.file_name().context("output path has no file name")?;
    let tmp = dir.join(format!(".{}.tmp-{}", file_name.to_string_lossy(), std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let result = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .and_then(|mut file| file.write_all(contents))
        .and_then(|()| std::fs::rename(&tmp, path))
        .with_context(|| format!("writing {}", path.display()));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// A stable 16-hex-digit hash of `text` (FNV-1a), for names derived from paths or
/// inputs: the same text gives the same name on every run and machine.
pub fn short_hash(text: &str) -> String {
    let hash =
        text.bytes().fold(0xcbf29ce484222325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100000001b3));
    format!("{hash:016x}")
}

/// A mistake in the user's input (flags, files, environment): printed as one line and
/// exits with code 2. Internal failures stay plain `anyhow` errors and exit 1.
#[derive(Debug)]
pub struct UserError(pub String);

impl fmt::Display for UserError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UserError {}

/// Returns early from a task with a [`UserError`].
#[macro_export]
macro_rules! user_error {
    ($($arg:tt)*) => {
        return Err(anyhow::Error::new($crate::project::UserError(format!($($arg)*))))
    };
}

/// A task that already reported why it failed and only needs to exit with `code`
/// (e.g. `--check` found a stale file: exit 1 after printing the diff).
#[derive(Debug)]
pub struct Exit(pub u8);

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "exit status {}", self.0)
    }
}

impl std::error::Error for Exit {}

impl Exit {
    /// The status to end with after a child failed: its exit code, or 1 when a signal
    /// ended it.
    pub fn of(status: std::process::ExitStatus) -> Exit {
        Exit(status.code().unwrap_or(1).clamp(1, 255) as u8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_holds_the_workspace_manifest() {
        let manifest = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
        assert!(manifest.contains("[workspace]"));
    }

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
    fn private_files_are_the_owners_alone_from_the_start() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = std::env::temp_dir().join(format!("xtask-private-{}", std::process::id()));
        let path = dir.join("secret.env");
        write_private(&path, "A=1").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // Replacing a file that was readable by others leaves it private too.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_private(&path, "A=2").unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn write_atomic_replaces_and_leaves_no_temp_file() {
        let dir = std::env::temp_dir().join(format!("xtask-atomic-{}", std::process::id()));
        let path = dir.join("out.txt");
        write_atomic(&path, "one").unwrap();
        write_atomic(&path, "two").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "two");
        let entries: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert_eq!(entries.len(), 1, "temporary file left behind");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
