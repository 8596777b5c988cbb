//! The persisted record of a session (`<state-dir>/services.json`): which backend runs
//! it, the database, each service's address and identity, and what the backend needs to
//! stop it from another shell. Written atomically, read and written through serde.
//!
//! The record's shape is defined here, the backends' parts too ([`Embedded`],
//! [`DockerRecord`]): the backends fill it in and read it back, the record knows no
//! backend.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use crate::sys::process::Identity;
use crate::sys::{fs, paths};

/// What runs the services.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// Processes on this machine and a throwaway PostgreSQL cluster
    Native,
    /// A Docker Compose project: the same services in containers
    Docker,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Native => "native",
            Backend::Docker => "docker",
        }
    }
}

/// The environment variable every process of a native session carries: the state
/// directory it belongs to. It finds a session's processes when its state file is gone.
pub const STATE_DIR_MARKER: &str = "TASKER_XTASK_STATE_DIR";

/// Bumped when the format changes: a file of another version is refused, not guessed at.
const FORMAT: u32 = 2;

/// What is running, as written to `<state>/services.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    pub version: u32,
    /// The directory the record lives in (not stored: it is where the file was found).
    #[serde(skip)]
    pub dir: PathBuf,
    pub backend: Backend,
    pub database: Option<Database>,
    pub services: Vec<ServiceRecord>,
    /// nextest filters of tests whose services were skipped.
    pub excluded_tests: Vec<String>,
    /// The Docker backend's Compose project.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker: Option<DockerRecord>,
    /// The run that owns the session (a pipeline, `cargo xtask test`): its processes die
    /// with it, and a later run cleans up after an owner that died. None: detached
    /// (`services up`), kept until `services down`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Identity>,
}

/// The database a session uses.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Database {
    /// A throwaway cluster started by the native backend.
    Embedded(Embedded),
    /// From `DATABASE_URL`; only the redacted form is kept.
    External { redacted_url: String },
    /// The Docker backend's PostgreSQL container, published on 127.0.0.1.
    Container { url: String },
}

impl Database {
    /// The URL for messages: passwords are never shown.
    pub fn shown_url(&self) -> String {
        match self {
            Database::Embedded(db) => crate::sys::secrets::redact(&db.url),
            Database::External { redacted_url } => redacted_url.clone(),
            Database::Container { url } => crate::sys::secrets::redact(url),
        }
    }
}

/// A running embedded cluster (the native backend's throwaway database).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Embedded {
    pub process: Identity,
    pub port: u16,
    pub data_dir: PathBuf,
    pub socket_dir: PathBuf,
    pub log: PathBuf,
    pub url: String,
}

/// The Docker backend's Compose project: what `down` from another shell needs to reach
/// it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DockerRecord {
    pub project: String,
    pub compose_file: PathBuf,
    pub compose: Compose,
}

/// A Compose command line: the program and the arguments before any of ours, and its
/// version. How one is chosen and run is the Docker backend's (its `compose` module).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compose {
    pub argv: Vec<String>,
    pub version: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceRecord {
    pub name: String,
    /// The base URL the tests use, reachable from this machine.
    pub url: String,
    /// Where the health check connects (the host side of the URL).
    pub addr: SocketAddr,
    pub instance_id: String,
    pub health_path: String,
    pub identity: String,
    pub export: Option<String>,
    pub started_unix: u64,
    /// Its log file (natively written as it runs; the Docker backend saves the
    /// container's log there when it stops or fails).
    pub log: PathBuf,
    /// Native: the process group that runs it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<Identity>,
}

pub fn state_file(dir: &Path) -> PathBuf {
    dir.join("services.json")
}

pub fn env_file(dir: &Path) -> PathBuf {
    dir.join("services.env")
}

pub fn log_dir(dir: &Path) -> PathBuf {
    dir.join("logs")
}

impl State {
    /// An empty record of a session about to start in `dir`.
    pub fn new(dir: &Path, backend: Backend, excluded_tests: Vec<String>) -> State {
        State {
            version: FORMAT,
            dir: dir.to_path_buf(),
            backend,
            database: None,
            services: Vec::new(),
            excluded_tests,
            docker: None,
            owner: None,
        }
    }

    /// The same record, owned by this process.
    pub fn owned(self) -> State {
        let owner = Identity::of_process(std::process::id());
        State { owner, ..self }
    }

    /// Writes the record, readable by its owner only: it holds the database password.
    pub fn save(&self) -> anyhow::Result<()> {
        fs::write_private(&state_file(&self.dir), serde_json::to_string_pretty(self)? + "\n")
    }

    /// The state in `dir`, if any. A file we cannot read is a user-level problem: say
    /// where it is rather than guessing what it describes.
    pub fn load(dir: &Path) -> anyhow::Result<Option<State>> {
        let path = state_file(dir);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(err).with_context(|| format!("reading {}", path.display())),
        };
        match serde_json::from_str::<State>(&text) {
            Ok(state) if state.version == FORMAT => {
                Ok(Some(State { dir: dir.to_path_buf(), ..state }))
            }
            _ => crate::user_error!(
                "{} is not a state file this xtask understands: stop its processes yourself and delete it",
                path.display()
            ),
        }
    }

    /// Variables for tests run against this session: the URL of each service and the
    /// database URL of a database the session started (an external one is already in
    /// the environment, and its password is never written anywhere).
    pub fn exports(&self) -> Vec<(String, String)> {
        let mut vars = Vec::new();
        match &self.database {
            Some(Database::Embedded(db)) => vars.push(("DATABASE_URL".to_string(), db.url.clone())),
            Some(Database::Container { url }) => {
                vars.push(("DATABASE_URL".to_string(), url.clone()))
            }
            Some(Database::External { .. }) | None => {}
        }
        for s in &self.services {
            if let Some(var) = &s.export {
                vars.push((var.clone(), s.url.clone()));
            }
        }
        vars
    }
}

/// The lock of a state directory: one run at a time may start, run or tear down a
/// session there. An OS file lock (`flock`), so the kernel drops it when its holder dies
/// however it dies; runs on other state directories (and clones) are independent.
pub struct StateLock {
    _file: std::fs::File,
}

impl StateLock {
    /// Takes the lock of `dir`, or fails with one line naming the run that holds it.
    pub fn acquire(dir: &Path) -> anyhow::Result<StateLock> {
        use std::io::{Read as _, Seek as _, Write as _};
        use std::os::fd::AsRawFd as _;
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join("lock");
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            crate::user_error!(
                "another xtask run{} is using {}: wait for it to end, or give this one its own --state-dir",
                if holder.is_empty() { String::new() } else { format!(" (pid {holder})") },
                paths::display_path(dir)
            );
        }
        file.set_len(0)?;
        file.rewind()?;
        writeln!(file, "{}", std::process::id())?;
        Ok(StateLock { _file: file })
    }
}

/// Unix time in seconds.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn native_state() -> State {
        State {
            database: Some(Database::Embedded(Embedded {
                process: Identity { pid: 10, pgid: 10, start_time: 99 },
                port: 5555,
                data_dir: "/s/postgres/data".into(),
                socket_dir: "/tmp/x".into(),
                log: "/s/logs/postgres.log".into(),
                url: "postgres://postgres@127.0.0.1:5555/t".into(),
            })),
            services: vec![ServiceRecord {
                name: "orchestration".into(),
                url: "http://127.0.0.1:4000".into(),
                addr: ([127, 0, 0, 1], 4000).into(),
                instance_id: "orchestration-1-2".into(),
                health_path: "/health".into(),
                identity: "tasker-orchestration".into(),
                export: Some("TASKER_TEST_ORCHESTRATION_URL".into()),
                started_unix: 1,
                log: "/s/logs/orchestration.log".into(),
                process: Some(Identity { pid: 11, pgid: 11, start_time: 100 }),
            }],
            ..State::new(Path::new("/s"), Backend::Native, vec!["binary(ruby)".into()])
        }
    }

    #[test]
    fn state_round_trips_through_a_file() {
        let dir = std::env::temp_dir().join(format!("xtask-state-{}", std::process::id()));
        let state = State { dir: dir.clone(), ..native_state() };
        state.save().unwrap();
        let back = State::load(&dir).unwrap().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(back.dir, dir);
        assert_eq!(back.services[0].process, state.services[0].process);
        assert_eq!(back.exports(), state.exports());
        assert_eq!(
            back.exports(),
            vec![
                ("DATABASE_URL".to_string(), "postgres://postgres@127.0.0.1:5555/t".to_string()),
                ("TASKER_TEST_ORCHESTRATION_URL".to_string(), "http://127.0.0.1:4000".to_string())
            ]
        );
        assert_eq!(back.excluded_tests, vec!["binary(ruby)"]);
    }

    #[test]
    fn an_external_database_url_is_never_exported() {
        let state = State {
            database: Some(Database::External { redacted_url: "postgres://u:***@h/db".into() }),
            ..State::new(Path::new("/s"), Backend::Native, vec![])
        };
        assert!(state.exports().is_empty());
        assert!(serde_json::to_string(&state).unwrap().contains("u:***@h"));
    }

    #[test]
    fn a_state_directory_is_locked_by_one_holder_at_a_time() {
        let dir = std::env::temp_dir().join(format!("xtask-lock-{}", std::process::id()));
        let first = StateLock::acquire(&dir).unwrap();
        let err = StateLock::acquire(&dir).err().expect("a second holder must be refused");
        assert!(err.downcast_ref::<crate::sys::error::UserError>().is_some());
        let expected = format!("another xtask run (pid {}) is using", std::process::id());
        assert!(err.to_string().starts_with(&expected), "{err}");
        drop(first);
        let again = StateLock::acquire(&dir);
        assert!(again.is_ok(), "the lock was not released with its holder");
        drop(again);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_file_of_another_format_is_refused_with_its_path() {
        let dir = std::env::temp_dir().join(format!("xtask-state-old-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(state_file(&dir), r#"{"version":1,"services":[]}"#).unwrap();
        let err = State::load(&dir).unwrap_err();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(err.downcast_ref::<crate::sys::error::UserError>().is_some());
        assert!(err.to_string().contains("services.json is not a state file"), "{err}");
    }
}
