//! The native backend: carries out a plan with processes on this machine. Database,
//! migrate step, services in waves (each in its own process group, output to
//! `<state>/logs/<name>.log`), readiness, and a state file that lets `down` (from any
//! shell) stop exactly what was started and nothing else.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use crate::manifest::Manifest;
use crate::plan::{self, Plan, PlannedService, Process, Vars};
use crate::processes::{self, Identity};
use crate::project::{self, UserError};
use crate::timings::Timings;
use crate::{config, postgres, readiness};

pub struct UpOptions {
    pub manifest: PathBuf,
    pub state_dir: PathBuf,
    pub only: Vec<String>,
    pub release: bool,
    pub fixed_ports: bool,
    /// Overall startup timeout, before the CI multiplier.
    pub timeout: Duration,
}

/// The database a session uses.
#[derive(Debug, Clone)]
pub enum Database {
    Embedded(postgres::Embedded),
    /// From `DATABASE_URL`; only the redacted form is kept.
    External {
        redacted_url: String,
    },
}

impl Database {
    pub fn shown_url(&self) -> String {
        match self {
            Database::Embedded(db) => db.url.clone(),
            Database::External { redacted_url } => redacted_url.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ServiceRecord {
    pub name: String,
    pub process: Identity,
    pub port: u16,
    pub url: String,
    pub instance_id: String,
    pub log: PathBuf,
    pub health_path: String,
    pub identity: String,
    pub export: Option<String>,
    pub started_unix: u64,
}

/// What is running, as written to `<state>/services.json`.
#[derive(Debug, Clone)]
pub struct State {
    pub dir: PathBuf,
    pub database: Option<Database>,
    pub services: Vec<ServiceRecord>,
    /// nextest filters of tests whose services were skipped.
    pub excluded_tests: Vec<String>,
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
    fn to_json(&self) -> Value {
        let database = self.database.as_ref().map(|db| match db {
            Database::Embedded(e) => json!({
                "url": e.url,
                "embedded": {
                    "pid": e.process.pid, "pgid": e.process.pgid, "start_time": e.process.start_time,
                    "port": e.port, "data_dir": e.data_dir, "socket_dir": e.socket_dir, "log": e.log,
                }
            }),
            Database::External { redacted_url } => json!({ "url": redacted_url, "embedded": null }),
        });
        let services: Vec<Value> = self
            .services
            .iter()
            .map(|s| {
                json!({
                    "name": s.name, "pid": s.process.pid, "pgid": s.process.pgid,
                    "start_time": s.process.start_time, "port": s.port, "url": s.url,
                    "instance_id": s.instance_id, "log": s.log, "health_path": s.health_path,
                    "identity": s.identity, "export": s.export, "started_unix": s.started_unix,
                })
            })
            .collect();
        json!({
            "version": 1,
            "log_dir": log_dir(&self.dir),
            "database": database,
            "services": services,
            "excluded_tests": self.excluded_tests,
        })
    }

    fn from_json(dir: &Path, value: &Value) -> Option<State> {
        let str_of = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
        let u64_of = |v: &Value, k: &str| v.get(k).and_then(Value::as_u64);
        let identity = |v: &Value| -> Option<Identity> {
            Some(Identity {
                pid: u64_of(v, "pid")? as u32,
                pgid: u64_of(v, "pgid")? as u32,
                start_time: u64_of(v, "start_time")?,
            })
        };
        let database = match value.get("database") {
            Some(Value::Null) | None => None,
            Some(db) => Some(match db.get("embedded") {
                Some(e) if !e.is_null() => Database::Embedded(postgres::Embedded {
                    process: identity(e)?,
                    port: u64_of(e, "port")? as u16,
                    data_dir: str_of(e, "data_dir")?.into(),
                    socket_dir: str_of(e, "socket_dir")?.into(),
                    log: str_of(e, "log")?.into(),
                    url: str_of(db, "url")?,
                }),
                _ => Database::External { redacted_url: str_of(db, "url")? },
            }),
        };
        let mut services = Vec::new();
        for s in value.get("services")?.as_array()? {
            services.push(ServiceRecord {
                name: str_of(s, "name")?,
                process: identity(s)?,
                port: u64_of(s, "port")? as u16,
                url: str_of(s, "url")?,
                instance_id: str_of(s, "instance_id")?,
                log: str_of(s, "log")?.into(),
                health_path: str_of(s, "health_path")?,
                identity: str_of(s, "identity")?,
                export: str_of(s, "export"),
                started_unix: u64_of(s, "started_unix")?,
            });
        }
        let excluded_tests = value
            .get("excluded_tests")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        Some(State { dir: dir.to_path_buf(), database, services, excluded_tests })
    }

    pub fn save(&self) -> anyhow::Result<()> {
        project::write_atomic(
            &state_file(&self.dir),
            serde_json::to_string_pretty(&self.to_json())? + "\n",
        )
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
        let parsed =
            serde_json::from_str::<Value>(&text).ok().and_then(|v| State::from_json(dir, &v));
        match parsed {
            Some(state) => Ok(Some(state)),
            None => crate::user_error!(
                "{} is not a state file this xtask understands: stop its processes yourself and delete it",
                path.display()
            ),
        }
    }

    /// Variables for tests run against this session: the URL of each service and,
    /// for an embedded server, `DATABASE_URL` (an external one is already in the
    /// environment and its password is never written anywhere).
    pub fn exports(&self) -> Vec<(String, String)> {
        let mut vars = Vec::new();
        if let Some(Database::Embedded(db)) = &self.database {
            vars.push(("DATABASE_URL".to_string(), db.url.clone()));
        }
        for s in &self.services {
            if let Some(var) = &s.export {
                vars.push((var.clone(), s.url.clone()));
            }
        }
        vars
    }

    /// Whether anything recorded here still runs (verified by pid and start time).
    pub fn anything_alive(&self) -> bool {
        let db_alive = matches!(&self.database, Some(Database::Embedded(db)) if processes::group_is_ours_and_alive(&db.process));
        db_alive || self.services.iter().any(|s| processes::group_is_ours_and_alive(&s.process))
    }
}

/// A started session. Dropping it while armed tears everything down, so an early
/// return, an error or a panic never leaves processes behind.
pub struct Session {
    pub state: State,
    armed: bool,
}

impl Session {
    /// Keeps the services running after this process exits (`services up`).
    pub fn detach(mut self) -> State {
        self.armed = false;
        self.state.clone()
    }

    pub fn teardown(mut self, grace: Duration) -> Teardown {
        self.armed = false;
        teardown(&self.state, grace)
    }

    /// A session in `state_dir` with nothing started yet; its state file is written at
    /// once, so a `down` from another shell knows it from the start.
    fn new(state_dir: &Path, excluded_tests: Vec<String>) -> anyhow::Result<Session> {
        let state = State {
            dir: state_dir.to_path_buf(),
            database: None,
            services: Vec::new(),
            excluded_tests,
        };
        let session = Session { state, armed: true };
        session.state.save()?;
        Ok(session)
    }

    /// Records the given database, or starts and records a throwaway one; returns its URL.
    fn start_database(&mut self, source: Source, database_name: &str) -> anyhow::Result<String> {
        match source {
            Source::Given(url) => {
                self.state.database =
                    Some(Database::External { redacted_url: postgres::redact(&url) });
                Ok(url)
            }
            Source::Throwaway(bins) => {
                let db = postgres::start(
                    &bins,
                    &self.state.dir,
                    database_name,
                    readiness::scaled(Duration::from_secs(30)),
                )?;
                let url = db.url.clone();
                self.state.database = Some(Database::Embedded(db));
                self.state.save()?;
                Ok(url)
            }
        }
    }
}

/// A database for test runs outside `services up`: `None` when `DATABASE_URL` is given
/// (and reachable), else a session holding a throwaway cluster, torn down when dropped.
/// It is recorded in `state_dir` like any session, so a run killed outright (SIGKILL)
/// leaves a record that `services down --state-dir` stops, not an unknown server. Its
/// `DATABASE_URL` is in `state.exports()`.
pub fn database_session(state_dir: &Path, database_name: &str) -> anyhow::Result<Option<Session>> {
    if postgres::given_url()?.is_some() {
        return Ok(None);
    }
    ensure_no_session(state_dir)?;
    let bins = postgres::ensure_binaries()?;
    let version = bins.version.clone();
    let mut session = Session::new(state_dir, Vec::new())?;
    let url = session.start_database(Source::Throwaway(bins), database_name)?;
    eprintln!("xtask: throwaway PostgreSQL {version} at {url}");
    Ok(Some(session))
}

impl Drop for Session {
    fn drop(&mut self) {
        if self.armed {
            teardown(&self.state, Duration::from_secs(5));
        }
    }
}

pub struct RealWorld;

impl plan::World for RealWorld {
    fn on_path(&self, program: &str) -> bool {
        which(program).is_some()
    }
    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }
}

pub fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(program)).find(|p| p.is_file())
}

/// Everything `up` checks before starting anything: manifest, plan, ports, database.
pub struct Prepared {
    plan: Plan,
    database: Source,
    /// The database created in a throwaway cluster.
    database_name: String,
}

/// Where the database comes from.
enum Source {
    /// `DATABASE_URL`, checked to be reachable.
    Given(String),
    /// A throwaway cluster, started with these server binaries.
    Throwaway(postgres::Binaries),
}

/// The command that stops the session in `state_dir`, for messages.
pub fn down_command(state_dir: &Path) -> String {
    if state_dir == project::xtask_dir() {
        "cargo xtask services down".to_string()
    } else {
        format!("cargo xtask services down --state-dir {}", state_dir.display())
    }
}

/// Refuses to start over a live session; clears a stale one (its processes are gone).
pub fn ensure_no_session(state_dir: &Path) -> anyhow::Result<()> {
    if let Some(old) = State::load(state_dir)? {
        if old.anything_alive() {
            crate::user_error!(
                "services from an earlier `up` are still running (state in {}): run `{}` first",
                project::display_path(&state_file(state_dir)),
                down_command(state_dir)
            );
        }
        teardown(&old, Duration::from_secs(1));
    }
    Ok(())
}

/// Checks `manifest` (as loaded from `options.manifest`) against the machine.
pub fn prepare(
    manifest: Manifest,
    options: &UpOptions,
    timings: &mut Timings,
) -> anyhow::Result<Prepared> {
    ensure_no_session(&options.state_dir)?;
    timings.time("config", || -> anyhow::Result<()> {
        for written in config::refresh_generated()? {
            eprintln!("xtask: regenerated {}", project::display_path(&written));
        }
        Ok(())
    })?;
    let root = project::root();
    let target = project::target_dir();
    let plan_options = plan::Options {
        only: &options.only,
        release: options.release,
        fixed_ports: options.fixed_ports,
        root: &root,
        target_dir: &target,
    };
    let plan = plan::plan(&manifest, &plan_options, &RealWorld).map_err(UserError)?;
    for skipped in &plan.skipped {
        eprintln!(
            "warning: skipping optional service `{}`: it {}; its tests are filtered out",
            skipped.name, skipped.reason
        );
    }
    if options.fixed_ports {
        for service in plan.services() {
            let port = service.fixed_port.expect("plan checked");
            if std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
                crate::user_error!(
                    "port {port} for `{}` (--fixed-ports, {}) is already in use: stop what listens there or drop --fixed-ports",
                    service.process.name,
                    project::display_path(&manifest.path)
                );
            }
        }
    }
    let database = match postgres::given_url()? {
        Some(url) => Source::Given(url),
        None => Source::Throwaway(postgres::ensure_binaries()?),
    };
    Ok(Prepared { plan, database, database_name: manifest.database_name })
}

/// Loads the manifest of `options`, prepares and starts it.
pub fn up(options: &UpOptions, timings: &mut Timings) -> anyhow::Result<Session> {
    let manifest = crate::manifest::load(&options.manifest)?;
    start(prepare(manifest, options, timings)?, options, timings)
}

/// Starts what `prepared` describes. Phases are added to `timings`: database, migrate,
/// start, ready.
pub fn start(
    prepared: Prepared,
    options: &UpOptions,
    timings: &mut Timings,
) -> anyhow::Result<Session> {
    let Prepared { plan, database, database_name } = prepared;
    processes::check_interrupted()?;
    let logs = log_dir(&options.state_dir);
    std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    let mut session = Session::new(&options.state_dir, plan.excluded_tests.clone())?;
    let root = project::root();

    let started = Instant::now();
    let database_url = session.start_database(database, &database_name)?;
    timings.add("database", started.elapsed());
    processes::check_interrupted()?;

    let env = Env {
        database_url: &database_url,
        root: &root,
        profile_dir: &plan.profile_dir,
        logs: &logs,
    };
    if let Some(migrate) = &plan.migrate {
        let started = Instant::now();
        run_migrate(migrate, &env, options.timeout)?;
        timings.add("migrate", started.elapsed());
    }

    let deadline = Instant::now() + readiness::scaled(options.timeout);
    // Every service started so far, with its process handle, for exit detection.
    let mut children: Vec<Child> = Vec::new();
    for wave in &plan.waves {
        processes::check_interrupted()?;
        let started = Instant::now();
        // Everything recorded so far belongs to earlier waves and is ready.
        let earlier = session.state.services.len();
        let urls: BTreeMap<String, String> =
            session.state.services.iter().map(|r| (r.name.clone(), r.url.clone())).collect();
        // Ports are reserved for the whole wave at once so two services never get the same one.
        let ports = reserve_ports(wave, options.fixed_ports)?;
        for (service, port) in wave.iter().zip(ports) {
            let (child, record) = spawn_service(service, port, &env, &urls)?;
            session.state.services.push(record);
            children.push(child);
        }
        session.state.save()?;
        timings.add("start", started.elapsed());

        let started = Instant::now();
        let mut targets: Vec<readiness::Target> = session
            .state
            .services
            .iter()
            .zip(children.iter_mut())
            .enumerate()
            .map(|(i, (r, child))| readiness::Target {
                name: &r.name,
                addr: SocketAddr::from(([127, 0, 0, 1], r.port)),
                path: &r.health_path,
                identity: &r.identity,
                instance_id: &r.instance_id,
                log: r.log.clone(),
                child: Some(child),
                ready: i < earlier,
            })
            .collect();
        let left = deadline.saturating_duration_since(Instant::now());
        let interrupted = || processes::interrupted().is_some();
        match readiness::wait_all(&mut targets, left, &interrupted) {
            Ok(()) => {}
            Err(readiness::Failure::Interrupted) => processes::check_interrupted()?,
            // A later wave waits only for what is left: report the whole timeout.
            Err(readiness::Failure::Timeout { pending, .. }) => {
                let waited = readiness::scaled(options.timeout);
                return Err(readiness::Failure::Timeout { waited, pending }.into());
            }
            Err(failure) => return Err(failure.into()),
        }
        timings.add("ready", started.elapsed());
    }
    Ok(session)
}

fn reserve_ports(wave: &[PlannedService], fixed: bool) -> anyhow::Result<Vec<u16>> {
    if fixed {
        return Ok(wave.iter().map(|s| s.fixed_port.expect("plan checked")).collect());
    }
    let listeners: Vec<std::net::TcpListener> = wave
        .iter()
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<_, _>>()
        .context("reserving ports")?;
    listeners.iter().map(|l| Ok(l.local_addr()?.port())).collect()
}

fn instance_id(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{name}-{}-{nanos:08x}", std::process::id())
}

fn command_for(process: &Process, vars: &Vars, log: &Path) -> anyhow::Result<Command> {
    let mut cmd = Command::new(&process.program);
    cmd.args(process.args.iter().map(|a| plan::render(a, vars)))
        .envs(process.env.iter().map(|(k, v)| (k, plan::render(v, vars))))
        .current_dir(&process.workdir);
    processes::own_group_logging_to(&mut cmd, log)?;
    Ok(cmd)
}

/// What every process of a session shares.
struct Env<'a> {
    database_url: &'a str,
    root: &'a Path,
    profile_dir: &'a Path,
    logs: &'a Path,
}

fn run_migrate(migrate: &Process, env: &Env, timeout: Duration) -> anyhow::Result<()> {
    let log = env.logs.join("migrate.log");
    let id = instance_id("migrate");
    let urls = BTreeMap::new();
    let vars = Vars {
        port: None,
        database_url: env.database_url,
        root: env.root,
        instance_id: &id,
        config: migrate.config.as_deref(),
        target_dir: env.profile_dir,
        urls: &urls,
    };
    let mut child = command_for(migrate, &vars, &log)?
        .spawn()
        .with_context(|| format!("starting the migrate step ({})", migrate.program.display()))?;
    let limit = readiness::scaled(timeout);
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait()? {
            if status.success() {
                return Ok(());
            }
            bail!(
                "the migrate step `{} {}` failed ({status}); last lines of {}:\n{}",
                migrate.program.display(),
                migrate.args.join(" "),
                project::display_path(&log),
                processes::tail(&log, 30)
            );
        }
        if processes::interrupted().is_some() || started.elapsed() > limit {
            // SAFETY: kill(2) on the group of our own child.
            unsafe { libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL) };
            let _ = child.wait();
            processes::check_interrupted()?;
            bail!(
                "the migrate step did not finish within {limit:?}; see {}",
                project::display_path(&log)
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn spawn_service(
    service: &PlannedService,
    port: u16,
    env: &Env,
    urls: &BTreeMap<String, String>,
) -> anyhow::Result<(Child, ServiceRecord)> {
    let name = &service.process.name;
    let log = env.logs.join(format!("{name}.log"));
    let id = instance_id(name);
    let vars = Vars {
        port: Some(port),
        database_url: env.database_url,
        root: env.root,
        instance_id: &id,
        config: service.process.config.as_deref(),
        target_dir: env.profile_dir,
        urls,
    };
    let child = command_for(&service.process, &vars, &log)?
        .spawn()
        .with_context(|| format!("starting `{name}` ({})", service.process.program.display()))?;
    let pid = child.id();
    let process = Identity::of_group_leader(pid)
        .with_context(|| format!("`{name}` (pid {pid}) vanished right after start"))?;
    let record = ServiceRecord {
        name: name.clone(),
        process,
        port,
        url: format!("http://127.0.0.1:{port}"),
        instance_id: id,
        log,
        health_path: service.health_path.clone(),
        identity: service.identity.clone(),
        export: service.export.clone(),
        started_unix: processes::unix_now(),
    };
    Ok((child, record))
}

/// What teardown did, for the report.
#[derive(Debug, Default)]
pub struct Teardown {
    pub took: Duration,
    /// Services that did not stop on SIGTERM within the grace period.
    pub killed: Vec<String>,
    /// Recorded pids that now belong to other processes (left alone).
    pub foreign: Vec<String>,
}

/// Stops everything `state` records, verifying each pid by its start time first; stops
/// the embedded database; removes the state and env files. Idempotent.
pub fn teardown(state: &State, grace: Duration) -> Teardown {
    let started = Instant::now();
    let mut report = Teardown::default();
    let mut groups: Vec<(&str, Identity)> = Vec::new();
    for s in state.services.iter().rev() {
        if processes::group_is_ours_and_alive(&s.process) {
            groups.push((&s.name, s.process));
        } else if processes::start_time(s.process.pid).is_some_and(|t| t != s.process.start_time) {
            report.foreign.push(format!(
                "{} (pid {} now belongs to another process; left alone)",
                s.name, s.process.pid
            ));
        }
    }
    report.killed =
        processes::terminate_groups(&groups, grace).into_iter().map(str::to_string).collect();
    if let Some(Database::Embedded(db)) = &state.database {
        postgres::stop(db);
    }
    let _ = std::fs::remove_file(state_file(&state.dir));
    let _ = std::fs::remove_file(env_file(&state.dir));
    let _ = std::fs::remove_dir(state.dir.join("postgres"));
    report.took = started.elapsed();
    report
}

/// `down`: tears down the session recorded in `state_dir`, if any.
pub fn down(state_dir: &Path, grace: Duration) -> anyhow::Result<Option<Teardown>> {
    Ok(State::load(state_dir)?.map(|state| teardown(&state, grace)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_through_json() {
        let state = State {
            dir: PathBuf::from("/s"),
            database: Some(Database::Embedded(postgres::Embedded {
                process: Identity { pid: 10, pgid: 10, start_time: 99 },
                port: 5555,
                data_dir: "/s/postgres/data".into(),
                socket_dir: "/tmp/x".into(),
                log: "/s/logs/postgres.log".into(),
                url: "postgres://postgres@127.0.0.1:5555/t".into(),
            })),
            services: vec![ServiceRecord {
                name: "orchestration".into(),
                process: Identity { pid: 11, pgid: 11, start_time: 100 },
                port: 4000,
                url: "http://127.0.0.1:4000".into(),
                instance_id: "orchestration-1-2".into(),
                log: "/s/logs/orchestration.log".into(),
                health_path: "/health".into(),
                identity: "tasker-orchestration".into(),
                export: Some("TASKER_TEST_ORCHESTRATION_URL".into()),
                started_unix: 1,
            }],
            excluded_tests: vec!["binary(ruby)".into()],
        };
        let back = State::from_json(Path::new("/s"), &state.to_json()).unwrap();
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
            dir: PathBuf::from("/s"),
            database: Some(Database::External { redacted_url: "postgres://u:***@h/db".into() }),
            services: vec![],
            excluded_tests: vec![],
        };
        assert!(state.exports().is_empty());
        assert!(state.to_json().to_string().contains("u:***@h"));
    }
}
