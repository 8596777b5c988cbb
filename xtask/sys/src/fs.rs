//! Writing files safely: atomically (a reader never sees half a file, a failure leaves
//! the old one), privately when they hold a secret; and finding files below a directory.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

/// Writes `contents` to `path` atomically: a temporary file in the same directory is
/// renamed over the target, so a reader never sees a half-written file and a failure
/// leaves the old file untouched.
pub fn write_atomic(path: &Path, contents: impl AsRef<[u8]>) -> anyhow::Result<()> {
    write_atomic_with_mode(path, contents.as_ref(), 0o666)
}

/// [`write_atomic`] unless `path` already holds exactly `contents`: a cache refreshed
/// with what it holds keeps its inode and times, so readers that go by those (a later
/// run's check that nothing changed) see no change. Returns whether it wrote.
pub fn write_if_changed(path: &Path, contents: impl AsRef<[u8]>) -> anyhow::Result<bool> {
    let contents = contents.as_ref();
    if std::fs::read(path).is_ok_and(|old| old == contents) {
        return Ok(false);
    }
    write_atomic(path, contents)?;
    Ok(true)
}

/// An exclusive OS file lock (`flock`) on `path` (created if missing), held until the
/// returned file is dropped; the kernel drops it when its holder dies, however it dies.
/// When another process holds it, `waiting` is printed once and the call waits, until
/// the lock is free or a signal interrupts us ([`crate::interrupts`]: the error that ends
/// the task with `128 + signal`).
pub fn lock_exclusive(path: &Path, waiting: &str) -> anyhow::Result<std::fs::File> {
    use std::os::fd::AsRawFd as _;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    let lock = |flags| {
        // SAFETY: flock on a descriptor we own.
        unsafe { libc::flock(file.as_raw_fd(), flags) == 0 }
    };
    if !lock(libc::LOCK_EX | libc::LOCK_NB) {
        eprintln!("{waiting}");
        // Polled, not a blocking flock: our handlers are installed with `signal`, which
        // restarts flock after them, so a Ctrl-C would sit out the other run's build.
        let mut pause = std::time::Duration::from_millis(1);
        while !lock(libc::LOCK_EX | libc::LOCK_NB) {
            let err = std::io::Error::last_os_error();
            let busy = err.kind() == std::io::ErrorKind::WouldBlock
                || err.kind() == std::io::ErrorKind::Interrupted;
            if !busy {
                return Err(err).with_context(|| format!("locking {}", path.display()));
            }
            crate::interrupts::check_interrupted()?;
            std::thread::sleep(pause);
            pause = (pause * 2).min(std::time::Duration::from_millis(50));
        }
    }
    Ok(file)
}

/// Whether `meta` belongs to the account we run as and nobody else may write to it: what
/// a program we run, or the directory that holds one, must be on a machine with other
/// accounts. `meta` from `symlink_metadata` also tells a link from what it points to.
pub fn is_ours_alone(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    // SAFETY: geteuid has no preconditions.
    meta.uid() == unsafe { libc::geteuid() } && meta.mode() & 0o022 == 0
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

/// Every file named `*.<extension>` in `dir` and the directories below it, sorted; none
/// when `dir` cannot be read.
pub fn files_below(dir: &Path, extension: &str) -> Vec<PathBuf> {
    files_below_with(dir, extension, &mut |dir| {
        std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path().is_dir()))
            .collect()
    })
}

/// [`files_below`] with the directory listing of the caller's choice (name, whether it
/// is a directory), for a caller that records what it lists.
pub fn files_below_with(
    dir: &Path,
    extension: &str,
    list: &mut dyn FnMut(&Path) -> Vec<(String, bool)>,
) -> Vec<PathBuf> {
    fn walk(
        dir: &Path,
        extension: &str,
        list: &mut dyn FnMut(&Path) -> Vec<(String, bool)>,
        out: &mut Vec<PathBuf>,
    ) {
        for (name, is_dir) in list(dir) {
            let path = dir.join(name);
            if is_dir {
                walk(&path, extension, list, out);
            } else if path.extension().is_some_and(|e| e == extension) {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(dir, extension, list, &mut files);
    files.sort();
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exclusive_lock_is_held_until_dropped() {
        use std::os::fd::AsRawFd as _;
        let dir = std::env::temp_dir().join(format!("xtask-lock-{}", std::process::id()));
        let path = dir.join("nested/x.lock");
        let held = lock_exclusive(&path, "waiting").unwrap();
        // Another open file description cannot take it while `held` lives.
        let other = std::fs::File::open(&path).unwrap();
        let try_lock = || unsafe { libc::flock(other.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        assert_ne!(try_lock(), 0, "taken while held");
        drop(held);
        assert_eq!(try_lock(), 0, "free once dropped");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn only_what_nobody_else_may_write_is_ours_alone() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = std::env::temp_dir().join(format!("xtask-ours-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("tool");
        std::fs::write(&file, "").unwrap();
        let mode = |m| std::fs::set_permissions(&file, std::fs::Permissions::from_mode(m)).unwrap();
        let ours = || is_ours_alone(&std::fs::symlink_metadata(&file).unwrap());
        mode(0o755);
        assert!(ours());
        mode(0o775);
        assert!(!ours(), "group-writable");
        mode(0o757);
        assert!(!ours(), "writable by everyone");
        std::fs::remove_dir_all(dir).unwrap();
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
