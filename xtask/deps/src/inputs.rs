//! Every file and directory the analysis reads goes through here, so that a run knows
//! its inputs: the paths it read, listed or looked for, and whether anything outside
//! them (a `cargo` run) fed it. [`replay`](crate::replay) keeps the output of a run under
//! the file-system signature of those inputs, and a later run whose inputs all have the
//! same signature prints it again instead of analysing.
//!
//! The log is one per process and only grows: a [`Recording`] takes what was logged
//! after it began, so two analyses at once (tests) each see their own reads, plus
//! perhaps the other's: more inputs, never fewer.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Input {
    /// A file read, a directory listed, or a path whose kind or absence was looked at.
    Path(PathBuf),
    /// Something besides files fed the run (a `cargo` process): its inputs are unknown.
    Outside,
}

static LOG: Mutex<Vec<Input>> = Mutex::new(Vec::new());

fn log(input: Input) {
    LOG.lock().unwrap_or_else(|e| e.into_inner()).push(input);
}

fn note(path: &Path) {
    log(Input::Path(path.to_path_buf()));
}

/// Says that the run used something other than files (a `cargo` process), so its output
/// is not a function of the paths it logged and is never replayed.
pub fn outside() {
    log(Input::Outside);
}

pub fn read(path: &Path) -> std::io::Result<Vec<u8>> {
    note(path);
    std::fs::read(path)
}

pub fn read_to_string(path: &Path) -> std::io::Result<String> {
    note(path);
    std::fs::read_to_string(path)
}

pub fn is_file(path: &Path) -> bool {
    note(path);
    path.is_file()
}

/// The modification time of `path`, if it exists.
pub fn modified(path: &Path) -> Option<SystemTime> {
    note(path);
    std::fs::metadata(path).ok()?.modified().ok()
}

/// The entries of `dir` (name, whether it is a directory), sorted; none when it cannot
/// be listed. A directory's signature changes when an entry is added, removed or renamed.
pub fn list_dir(dir: &Path) -> Vec<(String, bool)> {
    note(dir);
    let mut entries: Vec<(String, bool)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| {
            let is_dir = e.file_type().is_ok_and(|t| t.is_dir())
                || (e.file_type().is_ok_and(|t| t.is_symlink()) && e.path().is_dir());
            (e.file_name().to_string_lossy().into_owned(), is_dir)
        })
        .collect();
    entries.sort();
    entries
}

/// The files below `dir` whose extension is `extension`, sorted; every directory on the
/// way is logged.
pub fn files_below(dir: &Path, extension: &str) -> Vec<PathBuf> {
    xtask_sys::fs::files_below_with(dir, extension, &mut |dir| list_dir(dir))
}

/// What a run read, from [`Recording::start`] on.
pub struct Recording {
    from: usize,
    started: SystemTime,
}

/// The inputs of a finished run: each path with its signature when the run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inputs(pub Vec<(PathBuf, Signature)>);

impl Recording {
    pub fn start() -> Recording {
        let from = LOG.lock().unwrap_or_else(|e| e.into_inner()).len();
        Recording { from, started: SystemTime::now() }
    }

    /// The run's inputs with their signatures, or `None` when its output must not be
    /// replayed: something besides files fed it, a path could not be examined, or a
    /// path changed too recently to trust its signature (see [`settled`]).
    pub fn finish(self) -> Option<Inputs> {
        let mut paths: Vec<PathBuf> = {
            let log = LOG.lock().unwrap_or_else(|e| e.into_inner());
            let mut paths = Vec::new();
            for input in &log[self.from..] {
                match input {
                    Input::Outside => return None,
                    Input::Path(p) => paths.push(p.clone()),
                }
            }
            paths
        };
        paths.sort();
        paths.dedup();
        let inputs: Vec<(PathBuf, Signature)> =
            paths.into_iter().map(|p| signature(&p).ok().map(|s| (p, s))).collect::<Option<_>>()?;
        settled(&inputs, self.started).then_some(Inputs(inputs))
    }
}

/// How much older than the run's start every input must be for its signature to be
/// trusted: a file changed again within the file system's timestamp granularity (a clock
/// tick on Linux, 2 s on FAT) could keep its signature, and the run may have read the
/// content before that change. Git's "racily clean" entries are the same problem.
pub const SETTLE: Duration = Duration::from_secs(2);

/// Whether every input last changed at least [`SETTLE`] before `started`.
pub fn settled(inputs: &[(PathBuf, Signature)], started: SystemTime) -> bool {
    let Some(limit) = started.checked_sub(SETTLE) else { return false };
    inputs.iter().all(|(_, s)| match s {
        Signature::Absent => true,
        Signature::Present { changed, .. } => *changed < limit,
    })
}

/// What the file system says of a path: enough that any change to its content (or, for
/// a directory, to its entries) gives another signature. The change time (`ctime`) is
/// set by the kernel on every write, rename or metadata change and cannot be set back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signature {
    Absent,
    Present {
        device: u64,
        inode: u64,
        mode: u32,
        size: u64,
        modified: SystemTime,
        changed: SystemTime,
    },
}

/// The signature of `path` (following symbolic links, as the reads do); an error other
/// than "not found" is an error: nothing can be said of the path.
pub fn signature(path: &Path) -> std::io::Result<Signature> {
    use std::os::unix::fs::MetadataExt as _;
    match std::fs::metadata(path) {
        Ok(m) => {
            let at = |secs: i64, nanos: i64| {
                let secs = u64::try_from(secs).unwrap_or(0);
                SystemTime::UNIX_EPOCH
                    + Duration::new(secs, u32::try_from(nanos).unwrap_or(0).min(999_999_999))
            };
            Ok(Signature::Present {
                device: m.dev(),
                inode: m.ino(),
                mode: m.mode(),
                size: m.size(),
                modified: at(m.mtime(), m.mtime_nsec()),
                changed: at(m.ctime(), m.ctime_nsec()),
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Signature::Absent),
        Err(e) => Err(e),
    }
}

impl Signature {
    /// One line-safe field: `-`, or the numbers separated by `:`.
    pub fn encode(&self) -> String {
        match self {
            Signature::Absent => "-".into(),
            Signature::Present { device, inode, mode, size, modified, changed } => {
                let ns = |t: &SystemTime| {
                    t.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
                };
                format!("{device}:{inode}:{mode}:{size}:{}:{}", ns(modified), ns(changed))
            }
        }
    }

    pub fn decode(text: &str) -> Option<Signature> {
        if text == "-" {
            return Some(Signature::Absent);
        }
        let mut f = text.split(':');
        let mut next = || f.next()?.parse::<u128>().ok();
        let (device, inode, mode, size) = (next()?, next()?, next()?, next()?);
        let at = |ns: u128| {
            let secs = u64::try_from(ns / 1_000_000_000).ok()?;
            Some(SystemTime::UNIX_EPOCH + Duration::new(secs, (ns % 1_000_000_000) as u32))
        };
        let (modified, changed) = (at(next()?)?, at(next()?)?);
        Some(Signature::Present {
            device: device.try_into().ok()?,
            inode: inode.try_into().ok()?,
            mode: mode.try_into().ok()?,
            size: size.try_into().ok()?,
            modified,
            changed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_survives_its_encoding_and_changes_with_the_content() {
        let dir = crate::test_dir("inputs-encode");
        let file = dir.join("a.rs");
        std::fs::write(&file, "fn a() {}").unwrap();
        let before = signature(&file).unwrap();
        assert_eq!(Signature::decode(&before.encode()), Some(before.clone()));
        assert_eq!(Signature::decode("-"), Some(Signature::Absent));
        assert_eq!(Signature::decode("1:2:x:4:5:6"), None);
        // Other content of another size: another signature. (The same size within one
        // clock tick could keep it: that is what SETTLE is for.)
        std::fs::write(&file, "fn longer() {}").unwrap();
        assert_ne!(signature(&file).unwrap(), before);
        assert_eq!(signature(&dir.join("missing.rs")).unwrap(), Signature::Absent);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The log is one per process: under nextest (a process per test) a recording sees
    /// its own test's reads alone; threads of a plain `cargo test` could add another
    /// test's `outside()` to it.
    #[test]
    fn a_recording_holds_what_was_read_listed_or_looked_for_and_refuses_outside_input() {
        let dir = crate::test_dir("inputs-record");
        std::fs::create_dir_all(dir.join("src/nested")).unwrap();
        std::fs::write(dir.join("src/lib.rs"), "").unwrap();
        std::fs::write(dir.join("src/nested/m.rs"), "").unwrap();
        let recording = Recording::start();
        let _ = read_to_string(&dir.join("src/lib.rs"));
        let _ = is_file(&dir.join("src/absent.rs"));
        let files = files_below(&dir.join("src"), "rs");
        assert_eq!(files, [dir.join("src/lib.rs"), dir.join("src/nested/m.rs")]);
        // Just written: too recent to trust.
        assert_eq!(recording.finish(), None);
        let recording = Recording::start();
        let _ = read(&dir.join("src/lib.rs"));
        let _ = list_dir(&dir.join("src"));
        let logged = {
            let log = LOG.lock().unwrap();
            log[recording.from..].to_vec()
        };
        for expected in [dir.join("src/lib.rs"), dir.join("src")] {
            assert!(logged.contains(&Input::Path(expected.clone())), "{expected:?} in {logged:?}");
        }
        // As if the run had started well after the files were written.
        let later = Recording { from: recording.from, started: SystemTime::now() + SETTLE * 2 };
        let inputs = later.finish().expect("settled inputs");
        assert!(inputs.0.iter().any(|(p, _)| p == &dir.join("src/lib.rs")));
        let outside_too =
            Recording { from: LOG.lock().unwrap().len(), started: SystemTime::now() + SETTLE * 2 };
        let _ = read(&dir.join("src/lib.rs"));
        outside();
        assert_eq!(outside_too.finish(), None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The replay is sound only if the analysis reads nothing behind this module's back:
    /// no direct file-system read in the modules a plain run goes through.
    #[test]
    fn the_analysis_reads_files_only_through_this_module() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        // Not on a plain run's path: they edit, check with the compiler, or benchmark.
        let elsewhere =
            ["inputs.rs", "replay.rs", "bench.rs", "fix.rs", "verify.rs", "compiler.rs", "edit.rs"];
        // `resolve_manifest` picks the manifest, which is part of the replay's key.
        let allowed =
            ["let p = if p.is_dir() {", "if !p.is_file() {", "Ok(std::fs::canonicalize(&p)"];
        let reads = [
            "fs::read",
            "fs::metadata",
            "files_below(",
            ".is_file()",
            ".is_dir()",
            ".exists()",
            "read_dir(",
            "File::open",
            "canonicalize(",
            ".metadata()",
            "symlink_metadata",
            "read_link",
        ];
        let mut found = Vec::new();
        for (name, _) in list_dir(&src) {
            if !name.ends_with(".rs") || elsewhere.contains(&name.as_str()) {
                continue;
            }
            let text = std::fs::read_to_string(src.join(&name)).unwrap();
            let code = text.split("#[cfg(test)]\nmod tests").next().unwrap_or("");
            for (n, line) in code.lines().enumerate() {
                let line = line.trim();
                let direct = reads.iter().any(|r| {
                    line.contains(r)
                        && !line.contains(&format!("inputs::{}", r.trim_start_matches(['.', ':'])))
                });
                if direct && !line.starts_with("//") && !allowed.iter().any(|a| line.starts_with(a))
                {
                    found.push(format!("{name}:{}: {line}", n + 1));
                }
            }
        }
        assert!(found.is_empty(), "read through `inputs` instead:\n{}", found.join("\n"));
    }

    #[test]
    fn only_inputs_older_than_the_settle_time_are_trusted() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let present = |changed| Signature::Present {
            device: 1,
            inode: 2,
            mode: 0o100644,
            size: 3,
            modified: changed,
            changed,
        };
        let old = (PathBuf::from("old"), present(t - SETTLE - Duration::from_millis(1)));
        let fresh = (PathBuf::from("fresh"), present(t - SETTLE + Duration::from_millis(1)));
        let absent = (PathBuf::from("absent"), Signature::Absent);
        assert!(settled(&[old.clone(), absent.clone()], t));
        assert!(!settled(&[old, fresh, absent], t));
    }
}
