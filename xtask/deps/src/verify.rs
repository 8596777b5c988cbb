//! Applying removals safely: every touched file (manifests and `Cargo.lock`) is saved
//! first and restored when the change does not hold up (cargo metadata or cargo check
//! fails), on error, on panic (drop) and on Ctrl-C/SIGTERM (signal handler).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, Once};

use anyhow::Context as _;

use xtask_sys::fs::write_atomic;
use xtask_sys::interrupts::catch_interrupts;
use xtask_sys::user_error;

/// Saved contents of the files of every open [`Transaction`] (None: did not exist),
/// by transaction id, so the signal handler can put them back.
static SAVED: Mutex<BTreeMap<u64, Vec<Saved>>> = Mutex::new(BTreeMap::new());
/// A file and its contents before the change (None: it did not exist).
type Saved = (PathBuf, Option<Vec<u8>>);
/// Child processes (cargo) we started and have not reaped.
static CHILDREN: Mutex<Vec<u32>> = Mutex::new(Vec::new());
static NEXT_ID: AtomicU64 = AtomicU64::new(1);
static HANDLER: Once = Once::new();

fn interrupted() -> bool {
    xtask_sys::interrupts::interrupted().is_some()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn restore_files(files: &[(PathBuf, Option<Vec<u8>>)]) -> anyhow::Result<()> {
    let mut first_err = None;
    for (path, contents) in files {
        let result = match contents {
            Some(bytes) => write_atomic(path, bytes),
            None => match std::fs::remove_file(path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
                _ => Ok(()),
            },
        };
        if let Err(e) = result {
            first_err.get_or_insert(e);
        }
    }
    first_err.map_or(Ok(()), Err)
}

/// Installs (once) the SIGINT/SIGTERM/SIGHUP handling: the handler only sets a flag
/// ([`catch_interrupts`]); a watcher thread then stops our cargo children,
/// restores every open transaction's files and exits 130.
fn install_signal_handler() {
    HANDLER.call_once(|| {
        catch_interrupts();
        std::thread::spawn(|| {
            while !interrupted() {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            let children = {
                // Signalled under the lock: a registered child is not reaped before it is
                // unregistered (`output_of`), so its pid cannot have been reused.
                let children = lock(&CHILDREN);
                for pid in children.iter() {
                    // SAFETY: plain kill(2) on a child we own, not yet reaped.
                    unsafe { libc::kill(*pid as libc::pid_t, libc::SIGTERM) };
                }
                children.clone()
            };
            // Let them stop before restoring, so none writes Cargo.lock after us.
            for pid in &children {
                wait_gone(*pid);
            }
            let saved = lock(&SAVED);
            for files in saved.values() {
                let _ = restore_files(files);
            }
            eprintln!(
                "interrupted: restored {} file(s)",
                saved.values().map(Vec::len).sum::<usize>()
            );
            std::process::exit(130);
        });
    });
}

/// Waits (up to 5 s) until process `pid` has exited (gone or a zombie).
fn wait_gone(pid: u32) {
    for _ in 0..250 {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat)
                if !stat
                    .rsplit(')')
                    .next()
                    .is_some_and(|rest| rest.trim_start().starts_with('Z')) =>
            {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            _ => return,
        }
    }
}

/// Waits for a registered child and collects its output. It is reaped only after it is
/// unregistered, under the lock the signal watcher holds while it signals: the watcher
/// never signals a pid that could already belong to another process.
fn output_of(mut child: std::process::Child) -> std::io::Result<std::process::Output> {
    use std::io::Read as _;
    let pid = child.id();
    let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as Box<dyn std::io::Read + Send>));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as Box<dyn std::io::Read + Send>));
    let waited = wait_exit_keeping_pid(pid);
    let status = {
        let mut children = lock(&CHILDREN);
        children.retain(|p| *p != pid);
        waited.and_then(|()| child.wait())
    };
    Ok(std::process::Output {
        status: status?,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    })
}

/// Blocks until child `pid` has exited, leaving it unreaped (a zombie keeps its pid).
fn wait_exit_keeping_pid(pid: u32) -> std::io::Result<()> {
    loop {
        // SAFETY: waitid writes into the zeroed siginfo we own.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let rc = unsafe {
            libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, libc::WEXITED | libc::WNOWAIT)
        };
        if rc == 0 {
            return Ok(());
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// A set of files that are restored unless the change is committed.
pub struct Transaction {
    id: u64,
    files: Vec<(PathBuf, Option<Vec<u8>>)>,
    done: bool,
}

impl Transaction {
    /// Saves `paths` (missing files are remembered as missing).
    pub fn begin(paths: &[PathBuf]) -> anyhow::Result<Self> {
        install_signal_handler();
        let mut files = Vec::new();
        for path in paths {
            let contents = match std::fs::read(path) {
                Ok(bytes) => Some(bytes),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
            };
            files.push((path.clone(), contents));
        }
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        lock(&SAVED).insert(id, files.clone());
        Ok(Transaction { id, files, done: false })
    }

    /// Writes a file of the transaction (atomically, and never while the signal handler
    /// is restoring).
    pub fn write(&self, path: &Path, contents: &str) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.files.iter().any(|(p, _)| p == path),
            "{} is not part of the change",
            path.display()
        );
        let _guard = lock(&SAVED);
        write_atomic(path, contents)
    }

    pub fn restore(mut self) -> anyhow::Result<()> {
        self.done = true;
        let mut saved = lock(&SAVED);
        saved.remove(&self.id);
        restore_files(&self.files)
    }

    pub fn commit(mut self) {
        self.done = true;
        lock(&SAVED).remove(&self.id);
    }
}

impl Drop for Transaction {
    fn drop(&mut self) {
        if !self.done {
            let mut saved = lock(&SAVED);
            saved.remove(&self.id);
            if let Err(e) = restore_files(&self.files) {
                eprintln!("error: restoring files after a failure: {e:#}");
            }
        }
    }
}

/// How to run cargo against the workspace being changed.
#[derive(Debug, Clone)]
pub struct Cargo {
    pub manifest: PathBuf,
    /// `CARGO_TARGET_DIR` for the checks (tests give each fixture its own).
    pub target_dir: Option<PathBuf>,
    pub offline: bool,
}

impl Cargo {
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
        cmd.args(args).arg("--manifest-path").arg(&self.manifest);
        if self.offline {
            cmd.arg("--offline");
        }
        if let Some(dir) = &self.target_dir {
            cmd.env("CARGO_TARGET_DIR", dir);
        }
        // The checks ask whether the workspace still compiles. A workspace wrapper that
        // lints with warnings denied (CI's `.ci/bin/rustc-and-clippy`) would fail a removal
        // for the warnings it leaves, such as an import no longer used: plain rustc here.
        cmd.env_remove("RUSTC_WORKSPACE_WRAPPER").env_remove("CARGO_BUILD_RUSTC_WORKSPACE_WRAPPER");
        if let Some(root) = self.manifest.parent() {
            cmd.current_dir(root);
        }
        cmd
    }

    /// Runs cargo; Err holds the first error line of its output.
    fn run(&self, args: &[&str]) -> anyhow::Result<Result<(), String>> {
        Ok(self.run_capturing(args)?.1)
    }

    /// Runs cargo; returns its standard output, and Err with the first error line.
    pub fn run_capturing(&self, args: &[&str]) -> anyhow::Result<(String, Result<(), String>)> {
        let mut cmd = self.command(args);
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let child = cmd.spawn().with_context(|| format!("starting cargo {}", args.join(" ")))?;
        lock(&CHILDREN).push(child.id());
        let output = output_of(child);
        while interrupted() {
            // The child died of our signal: leave restoring and exiting to the handler.
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let output = output.with_context(|| format!("waiting for cargo {}", args.join(" ")))?;
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if output.status.success() {
            return Ok((stdout, Ok(())));
        }
        let text = format!("{}\n{}", String::from_utf8_lossy(&output.stderr), stdout);
        Ok((stdout, Err(first_error(&text))))
    }

    /// The manifests still load and resolve.
    pub fn metadata(&self) -> anyhow::Result<Result<(), String>> {
        self.run(&["metadata", "--format-version", "1", "--quiet"])
    }

    /// `cargo check --workspace --all-targets` (with `--all-features` when asked).
    pub fn check(&self, all_features: bool) -> anyhow::Result<Result<(), String>> {
        let mut args =
            vec!["check", "--workspace", "--all-targets", "--quiet", "--message-format", "short"];
        if all_features {
            args.push("--all-features");
        }
        self.run(&args)
    }

    /// `cargo check -p PKG --all-targets`: the package on its own, with its default
    /// features, so that features other members enable cannot hide a break.
    pub fn check_package(&self, package: &str) -> anyhow::Result<Result<(), String>> {
        self.run(&["check", "-p", package, "--all-targets", "--quiet", "--message-format", "short"])
    }

    pub fn test(&self, all_features: bool) -> anyhow::Result<Result<(), String>> {
        let mut args = vec!["test", "--workspace", "--quiet", "--message-format", "short"];
        if all_features {
            args.push("--all-features");
        }
        self.run(&args)
    }
}

/// The first compiler error in cargo's output (short message format), else its last line.
pub fn first_error(output: &str) -> String {
    let lines: Vec<&str> = output.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let is_summary =
        |l: &str| l.starts_with("error: could not compile") || l.starts_with("error: aborting");
    lines
        .iter()
        .find(|l| (l.contains(": error") || l.starts_with("error")) && !is_summary(l))
        .or_else(|| lines.iter().find(|l| l.contains("panicked") || l.contains("FAILED")))
        .or(lines.last())
        .map(|l| l.to_string())
        .unwrap_or_else(|| "cargo failed without output".into())
}

/// Refuses to edit a tree with uncommitted changes to tracked files (they would be mixed
/// with ours). Untracked files do not count: the edits touch only tracked manifests and
/// `Cargo.lock`, and the analysis itself may just have written its caches into an
/// unignored `target/`.
pub fn ensure_clean(root: &Path) -> anyhow::Result<()> {
    let out = Command::new("git")
        .arg("-C")
        .arg(root)
        .args(["status", "--porcelain", "--untracked-files=no"])
        .output();
    match out {
        Ok(o) if o.status.success() => {
            if !o.stdout.is_empty() {
                user_error!(
                    "{} has uncommitted changes; commit or stash them first, or pass --allow-dirty",
                    root.display()
                );
            }
            Ok(())
        }
        _ => user_error!(
            "cannot tell whether {} is clean (not a git repository?); pass --allow-dirty to edit it anyway",
            root.display()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_stays_unreaped_until_it_is_unregistered() {
        let child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        wait_exit_keeping_pid(pid).unwrap();
        // Exited but not reaped: the pid is still this zombie, not free for reuse.
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        assert!(stat.rsplit(')').next().unwrap().trim_start().starts_with('Z'), "{stat}");
        lock(&CHILDREN).push(pid);
        let output = output_of(child).unwrap();
        assert!(output.status.success());
        assert!(!lock(&CHILDREN).contains(&pid), "still registered after it was reaped");
        assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists(), "not reaped");
    }

    #[test]
    fn restore_and_drop_put_files_back_and_commit_keeps_them() {
        let dir = crate::test_dir("verify-txn");
        let a = dir.join("a.toml");
        let missing = dir.join("Cargo.lock");
        std::fs::write(&a, "old").unwrap();
        let t = Transaction::begin(&[a.clone(), missing.clone()]).unwrap();
        t.write(&a, "new").unwrap();
        t.write(&missing, "created").unwrap();
        t.restore().unwrap();
        assert_eq!(std::fs::read_to_string(&a).unwrap(), "old");
        assert!(!missing.exists());

        {
            let t = Transaction::begin(std::slice::from_ref(&a)).unwrap();
            t.write(&a, "dropped").unwrap();
        }
        assert_eq!(std::fs::read_to_string(&a).unwrap(), "old");

        let t = Transaction::begin(std::slice::from_ref(&a)).unwrap();
        t.write(&a, "kept").unwrap();
        t.commit();
        assert_eq!(std::fs::read_to_string(&a).unwrap(), "kept");
        assert!(
            Transaction::begin(&[]).unwrap().write(&a, "x").is_err(),
            "files outside the change are refused"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn panic_restores() {
        let dir = crate::test_dir("verify-panic");
        let a = dir.join("a.toml");
        std::fs::write(&a, "old").unwrap();
        let path = a.clone();
        let result = std::panic::catch_unwind(move || {
            let t = Transaction::begin(std::slice::from_ref(&path)).unwrap();
            t.write(&path, "half").unwrap();
            panic!("boom");
        });
        assert!(result.is_err());
        assert_eq!(std::fs::read_to_string(&a).unwrap(), "old");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_tree_is_dirty_with_changed_tracked_files_not_with_untracked_ones() {
        let dir = crate::test_dir("verify-clean");
        let git = |args: &[&str]| {
            let ok = Command::new("git").arg("-C").arg(&dir).args(args).status().unwrap();
            assert!(ok.success(), "git {args:?}");
        };
        git(&["init", "-q"]);
        std::fs::write(dir.join("Cargo.toml"), "[workspace]\n").unwrap();
        git(&["add", "Cargo.toml"]);
        git(&[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "-c",
            "commit.gpgsign=false",
            "commit",
            "-qm",
            "init",
        ]);
        std::fs::create_dir_all(dir.join("target/xtask")).unwrap();
        std::fs::write(dir.join("target/xtask/cache"), "").unwrap();
        ensure_clean(&dir).expect("untracked files leave the tree clean");
        std::fs::write(dir.join("Cargo.toml"), "[workspace]\nmembers = []\n").unwrap();
        let err = ensure_clean(&dir).unwrap_err();
        assert!(err.downcast_ref::<xtask_sys::error::UserError>().is_some(), "{err:#}");
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn first_error_picks_the_compiler_message() {
        let out = "    Checking a v0.1.0\nsrc/lib.rs:1:5: error[E0432]: unresolved import `foo`\nerror: could not compile `a` (lib) due to 1 previous error\n";
        assert_eq!(first_error(out), "src/lib.rs:1:5: error[E0432]: unresolved import `foo`");
        assert_eq!(
            first_error("error: failed to load manifest\n"),
            "error: failed to load manifest"
        );
    }
}
