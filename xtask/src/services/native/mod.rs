//! The native backend: carries out a plan with processes on this machine. Database,
//! migrate step, services in waves (each in its own process group, output to
//! `<state>/logs/<name>.log`), readiness, and a state file that lets `down` (from any
//! shell) stop exactly what was started and nothing else.

mod postgres;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use super::manifest::Manifest;
use super::pg_probe;
use super::plan::{self, Plan, PlannedService, Process, Vars};
use super::session::{Lifecycle, Session, Teardown, UpOptions};
use super::state::{self, Backend, Database, ServiceRecord, State, StateLock, unix_now};
use super::{logs, readiness};
use crate::sys::process::{self, Identity};
use crate::sys::{host, interrupts, paths, secrets};
use crate::timings::Timings;

/// Services listen on the loopback interface only: nothing of a session is reachable
/// from other machines.
const BIND_HOST: &str = "127.0.0.1";

/// Where the database comes from.
enum Source {
    /// `DATABASE_URL`, checked to be reachable.
    Given(String),
    /// A throwaway cluster, started with these server binaries.
    Throwaway(postgres::Binaries),
}

/// Records the given database, or starts and records a throwaway one; returns its URL.
fn start_database(
    session: &mut Session,
    source: Source,
    database_name: &str,
    migrated: Option<&Path>,
) -> anyhow::Result<String> {
    match source {
        Source::Given(url) => {
            session.state.database =
                Some(Database::External { redacted_url: secrets::redact(&url) });
            Ok(url)
        }
        Source::Throwaway(bins) => {
            // No live session here (checked, and the state directory is locked): what a
            // killed one left goes.
            postgres::remove_leftovers(&session.state.dir);
            let db = postgres::start(
                &bins,
                &session.state.dir,
                database_name,
                readiness::scaled(Duration::from_secs(30)),
                session.state.owner.is_some(),
                migrated,
            )?;
            let url = db.url.clone();
            session.state.database = Some(Database::Embedded(db));
            session.state.save()?;
            Ok(url)
        }
    }
}

/// A session holding only a throwaway cluster, for test runs outside `services up`
/// (the caller holds `lock` and found no session in its way). It is recorded in
/// `state_dir` like any session, so a run killed outright (SIGKILL) leaves a record that
/// `services down --state-dir` stops, not an unknown server.
pub fn database_session(
    state_dir: &Path,
    database_name: &str,
    lock: StateLock,
) -> anyhow::Result<Session> {
    let bins = postgres::ensure_binaries()?;
    let version = bins.version.clone();
    let state = State::new(state_dir, Backend::Native, Vec::new()).owned();
    let mut session = Session::begin(state, &Native)?.holding(lock);
    let url = start_database(&mut session, Source::Throwaway(bins), database_name, None)?;
    eprintln!("xtask: throwaway PostgreSQL {version} at {}", secrets::redact(&url));
    Ok(session)
}

/// Removes what killed sessions of `state_dir` left of their databases (call only when
/// no session of it runs).
pub fn remove_leftovers(state_dir: &Path) {
    postgres::remove_leftovers(state_dir);
}

/// Where the data directories of `state_dir`'s sessions go.
pub fn database_files_of(state_dir: &Path) -> PathBuf {
    postgres::data_dirs_of(state_dir)
}

/// This machine, as the plan sees it.
struct RealWorld;

impl plan::World for RealWorld {
    fn on_path(&self, program: &str) -> bool {
        host::which(program).is_some()
    }
    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }
}

/// Everything checked before the native backend starts anything.
pub struct Prepared {
    plan: Plan,
    database: Source,
    /// The database created in a throwaway cluster.
    database_name: String,
}

/// Plans `manifest` for this machine: binaries, requirements on PATH, fixed ports, the
/// database.
pub fn prepare(manifest: Manifest, options: &UpOptions) -> anyhow::Result<Prepared> {
    let plan = options.plan(&manifest, &RealWorld)?;
    if options.fixed_ports {
        for service in plan.services() {
            let port = service.fixed_port.expect("plan checked");
            if std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
                crate::user_error!(
                    "port {port} for `{}` (--fixed-ports, {}) is already in use: stop what listens there or drop --fixed-ports",
                    service.process.name,
                    paths::display_path(&manifest.path)
                );
            }
        }
    }
    let database = match pg_probe::given_url()? {
        Some(url) => Source::Given(url),
        None => Source::Throwaway(postgres::ensure_binaries()?),
    };
    Ok(Prepared { plan, database, database_name: manifest.database_name })
}

/// Starts what `prepared` describes. Phases are added to `timings`: database, migrate,
/// start, ready.
pub fn start(
    prepared: Prepared,
    options: &UpOptions,
    timings: &mut Timings,
) -> anyhow::Result<Session> {
    let Prepared { plan, database, database_name } = prepared;
    interrupts::check_interrupted()?;
    let logs = state::log_dir(&options.state_dir);
    std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    let state = State::new(&options.state_dir, Backend::Native, plan.excluded_tests.clone());
    let mut session =
        Session::begin(if options.detached { state } else { state.owned() }, &Native)?;
    let root = paths::root().display().to_string();
    let profile_dir = plan.profile_dir.display().to_string();

    // What every process shares; the database URL is filled in per use.
    let shared = Env {
        database_url: "",
        root: &root,
        profile_dir: &profile_dir,
        logs: &logs,
        state_dir: &options.state_dir,
        owned: session.state.owner.is_some(),
    };
    // A cached cluster with the migrate step's result, when the manifest allows it: made
    // here on a miss (the step runs against a build server), copied below on a hit.
    let mut migrated = None;
    if let (Source::Throwaway(bins), Some(migrate), true) =
        (&database, &plan.migrate, plan.migrate_cached)
    {
        let started = Instant::now();
        let key = migrate_cache_key(migrate, &bins.version, &database_name)?;
        let (dir, built) = postgres::migrated_template(
            bins,
            &options.state_dir,
            &database_name,
            &key,
            readiness::scaled(Duration::from_secs(30)),
            &mut |url| run_migrate(migrate, &Env { database_url: url, ..shared }, options.timeout),
        )?;
        if !built {
            let note = format!(
                "not run: its result for this build of {} is the cached cluster {}\n",
                migrate.program.display(),
                dir.display()
            );
            std::fs::write(logs.join("migrate.log"), note)?;
        }
        timings.add("migrate", started.elapsed());
        migrated = Some(dir);
    }
    interrupts::check_interrupted()?;

    let started = Instant::now();
    let database_url = start_database(&mut session, database, &database_name, migrated.as_deref())?;
    timings.add("database", started.elapsed());
    interrupts::check_interrupted()?;

    let env = Env { database_url: &database_url, ..shared };
    if let (Some(migrate), None) = (&plan.migrate, &migrated) {
        let started = Instant::now();
        run_migrate(migrate, &env, options.timeout)?;
        timings.add("migrate", started.elapsed());
    }

    let deadline = Instant::now() + readiness::scaled(options.timeout);
    // Every service started so far, with its process handle, for exit detection.
    let mut children: Vec<Child> = Vec::new();
    for wave in &plan.waves {
        interrupts::check_interrupted()?;
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
        // A free port can be taken between our check and the service's bind: a service
        // of this wave that exits because its port is in use gets a new one (twice).
        let mut retries = 0;
        loop {
            let records = &session.state.services;
            let mut exited = || {
                records.iter().zip(children.iter_mut()).find_map(|(r, child)| {
                    Some(readiness::Failure::Exited {
                        name: r.name.clone(),
                        status: process::exit_status(child)?,
                        log: paths::display_path(&r.log),
                        tail: logs::tail(&r.log, 30),
                    })
                })
            };
            let waited = readiness::scaled(options.timeout);
            let err =
                match readiness::wait_for_services(records, earlier, deadline, waited, &mut exited)
                {
                    Ok(()) => break,
                    Err(err) => err,
                };
            let lost_port = match err.downcast_ref::<readiness::Failure>() {
                Some(readiness::Failure::Exited { name, tail, .. })
                    if retries < 2 && !options.fixed_ports && port_was_taken(tail) =>
                {
                    records.iter().skip(earlier).position(|r| &r.name == name).map(|i| earlier + i)
                }
                _ => None,
            };
            let Some(index) = lost_port else { return Err(err) };
            retries += 1;
            let service =
                wave.iter().find(|s| s.process.name == session.state.services[index].name);
            let service = service.expect("a service of this wave");
            let port = reserve_ports(std::slice::from_ref(service), false)?[0];
            eprintln!(
                "xtask: `{}` lost its port to another program; starting it on {port}",
                service.process.name
            );
            let (child, record) = spawn_service(service, port, &env, &urls)?;
            session.state.services[index] = record;
            children[index] = child;
            session.state.save()?;
        }
        timings.add("ready", started.elapsed());
    }
    Ok(session)
}

/// Whether a service's last words say its port was taken.
fn port_was_taken(log_tail: &str) -> bool {
    let tail = log_tail.to_ascii_lowercase();
    tail.contains("address already in use") || tail.contains("addrinuse")
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

/// The command of `process` with its placeholders filled, in its own process group,
/// logging to `log`.
fn command_for(
    process: &Process,
    env: &Env,
    port: Option<u16>,
    instance_id: &str,
    urls: &BTreeMap<String, String>,
    log: &Path,
) -> anyhow::Result<Command> {
    let config = process.config.as_ref().map(|c| c.display().to_string());
    let vars = Vars {
        port,
        bind_host: BIND_HOST,
        database_url: env.database_url,
        root: env.root,
        instance_id,
        config: config.as_deref(),
        target_dir: env.profile_dir,
        urls,
    };
    let mut cmd = Command::new(&process.program);
    cmd.args(process.args.iter().map(|a| plan::render(a, &vars)))
        .envs(process.env.iter().map(|(k, v)| (k, plan::render(v, &vars))))
        .current_dir(&process.workdir);
    process::own_group_logging_to(&mut cmd, log)?;
    process::mark(&mut cmd, state::STATE_DIR_MARKER, env.state_dir);
    if env.owned {
        process::die_with_owner(&mut cmd, libc::SIGKILL);
    }
    Ok(cmd)
}

/// What every process of a session shares.
#[derive(Clone, Copy)]
struct Env<'a> {
    database_url: &'a str,
    root: &'a str,
    profile_dir: &'a str,
    logs: &'a Path,
    state_dir: &'a Path,
    /// The processes die with this one (a pipeline's session).
    owned: bool,
}

/// What the migrate step's result depends on, as a cache key: the server version and
/// database, the bytes of its program (a rebuild with other migrations is another key,
/// whatever its path), its args, env and config file as written in the manifest. Values
/// filled per session (ports, password) are not part of it.
fn migrate_cache_key(migrate: &Process, version: &str, database: &str) -> anyhow::Result<String> {
    let program = program_digest(&migrate.program)?;
    let config = match &migrate.config {
        Some(path) => {
            Some(std::fs::read(path).with_context(|| format!("reading {}", path.display()))?)
        }
        None => None,
    };
    Ok(cache_key(version, database, &program, migrate, config.as_deref()))
}

/// The digest of a program's bytes. Hashing 20 MB in this unoptimised crate takes about
/// 0.1 s, so the digest is remembered per file version: path, inode, size and
/// modification time to the nanosecond (cargo writes a new file per build). Not ctime:
/// the Docker backend's hard links into its build context change it on every run.
fn program_digest(program: &Path) -> anyhow::Result<String> {
    use std::os::unix::fs::MetadataExt as _;
    let meta = std::fs::metadata(program)
        .with_context(|| format!("reading the migrate step's program {}", program.display()))?;
    let version = format!(
        "{} {} {} {} {}.{}",
        program.display(),
        meta.dev(),
        meta.ino(),
        meta.size(),
        meta.mtime(),
        meta.mtime_nsec()
    );
    let memo = paths::xtask_dir().join("digests").join(paths::short_hash(&version));
    if let Ok(text) = std::fs::read_to_string(&memo)
        && let Some(digest) = text.strip_prefix(&format!("{version}\n"))
    {
        return Ok(digest.trim().to_string());
    }
    let bytes = std::fs::read(program)
        .with_context(|| format!("reading the migrate step's program {}", program.display()))?;
    let digest = digest(&bytes);
    // Written only if the file did not change while we read it.
    if std::fs::metadata(program)
        .is_ok_and(|m| (m.mtime(), m.mtime_nsec()) == (meta.mtime(), meta.mtime_nsec()))
    {
        std::fs::create_dir_all(memo.parent().unwrap())?;
        crate::sys::fs::write_atomic(&memo, format!("{version}\n{digest}\n").as_bytes())?;
    }
    Ok(digest)
}

/// 128 bits from two keyed SipHash passes over `value` (stable: std's default hasher may
/// change between releases).
fn digest(value: &(impl std::hash::Hash + ?Sized)) -> String {
    use std::hash::Hasher as _;
    let pass = |seed: u64| {
        #[allow(deprecated)] // SipHasher: fixed keys and algorithm, which a cache key needs
        let mut h = std::hash::SipHasher::new_with_keys(seed, !seed);
        value.hash(&mut h);
        h.finish()
    };
    format!("{:016x}{:016x}", pass(0x7461_736b_6572_2d31), pass(0x6d69_6772_6174_6532))
}

/// The pure part of [`migrate_cache_key`].
fn cache_key(
    version: &str,
    database: &str,
    program_digest: &str,
    migrate: &Process,
    config: Option<&[u8]>,
) -> String {
    digest(&(
        version,
        database,
        program_digest,
        &migrate.args,
        &migrate.env,
        &migrate.workdir,
        config,
    ))
}

fn run_migrate(migrate: &Process, env: &Env, timeout: Duration) -> anyhow::Result<()> {
    let log = env.logs.join("migrate.log");
    let id = instance_id("migrate");
    let mut child = command_for(migrate, env, None, &id, &BTreeMap::new(), &log)?
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
                paths::display_path(&log),
                logs::tail(&log, 30)
            );
        }
        if interrupts::interrupted().is_some() || started.elapsed() > limit {
            // SAFETY: kill(2) on the group of our own child.
            unsafe { libc::kill(-(child.id() as libc::pid_t), libc::SIGKILL) };
            let _ = child.wait();
            interrupts::check_interrupted()?;
            bail!(
                "the migrate step did not finish within {limit:?}; see {}",
                paths::display_path(&log)
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
    let child = command_for(&service.process, env, Some(port), &id, urls, &log)?
        .spawn()
        .with_context(|| format!("starting `{name}` ({})", service.process.program.display()))?;
    let pid = child.id();
    let process = Identity::of_group_leader(pid)
        .with_context(|| format!("`{name}` (pid {pid}) vanished right after start"))?;
    let record = ServiceRecord {
        name: name.clone(),
        url: format!("http://{BIND_HOST}:{port}"),
        addr: ([127, 0, 0, 1], port).into(),
        instance_id: id,
        health_path: service.health_path.clone(),
        identity: service.identity.clone(),
        export: service.export.clone(),
        started_unix: unix_now(),
        log,
        process: Some(process),
    };
    Ok((child, record))
}

/// The native backend's side of a session: processes verified by pid and start time.
pub struct Native;

impl Lifecycle for Native {
    fn stop(&self, state: &State, grace: Duration, _save_logs: bool) -> Teardown {
        stop(state, grace)
    }

    fn alive_services(&self, state: &State) -> Vec<String> {
        state.services.iter().filter(|s| service_alive(s)).map(|s| s.name.clone()).collect()
    }

    fn anything_alive(&self, state: &State) -> bool {
        let db_alive = matches!(&state.database, Some(Database::Embedded(db)) if process::group_is_ours_and_alive(&db.process));
        db_alive || state.services.iter().any(service_alive)
    }
}

fn service_alive(service: &ServiceRecord) -> bool {
    service.process.is_some_and(|p| process::group_is_ours_and_alive(&p))
}

/// Stops everything `state` records, verifying each pid by its start time first, and
/// the embedded database. (The service logs stay where they are.)
fn stop(state: &State, grace: Duration) -> Teardown {
    let mut report = Teardown::default();
    let mut groups: Vec<(&str, Identity)> = Vec::new();
    for s in state.services.iter().rev() {
        let Some(process) = s.process else { continue };
        if process::group_is_ours_and_alive(&process) {
            groups.push((&s.name, process));
        } else if process::start_time(process.pid).is_some_and(|t| t != process.start_time) {
            report.foreign.push(format!(
                "{} (pid {} now belongs to another process; left alone)",
                s.name, process.pid
            ));
        }
    }
    report.killed =
        process::terminate_groups(&groups, grace).into_iter().map(str::to_string).collect();
    if let Some(Database::Embedded(db)) = &state.database {
        postgres::stop(db);
    }
    let _ = std::fs::remove_dir(state.dir.join("postgres"));
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn migrate_step(program: &Path) -> Process {
        Process {
            name: "migrate".into(),
            program: program.to_path_buf(),
            args: vec!["migrate".into()],
            workdir: PathBuf::from("/w"),
            env: vec![("DATABASE_URL".into(), "{database_url}".into())],
            config: None,
        }
    }

    /// Any input of the migrate step changes the key, so a cluster migrated by another
    /// build (other migrations compiled in), other args, env or config is never reused.
    #[test]
    fn the_migrated_template_key_changes_with_every_input_of_the_step() {
        let step = migrate_step(Path::new("/bin/m"));
        let base = cache_key("15.18", "db", "p1", &step, Some(b"a = 1"));
        assert_eq!(base, cache_key("15.18", "db", "p1", &step, Some(b"a = 1")), "not stable");
        assert_eq!(base.len(), 32);
        let mut other_args = step.clone();
        other_args.args.push("--all".into());
        let mut other_env = step.clone();
        other_env.env.push(("X".into(), "1".into()));
        for changed in [
            cache_key("16.1", "db", "p1", &step, Some(b"a = 1")),
            cache_key("15.18", "db2", "p1", &step, Some(b"a = 1")),
            cache_key("15.18", "db", "p2", &step, Some(b"a = 1")),
            cache_key("15.18", "db", "p1", &other_args, Some(b"a = 1")),
            cache_key("15.18", "db", "p1", &other_env, Some(b"a = 1")),
            cache_key("15.18", "db", "p1", &step, Some(b"a = 2")),
            cache_key("15.18", "db", "p1", &step, None),
        ] {
            assert_ne!(changed, base);
        }
    }

    /// The program's digest follows its bytes: rewritten with other content (even with
    /// its modification time set back) it is another digest, never the remembered one.
    #[test]
    fn a_rewritten_program_gets_a_new_digest() {
        let dir = std::env::temp_dir().join(format!("xtask-digest-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let program = dir.join("migrate-bin");
        std::fs::write(&program, b"migrations v1").unwrap();
        let mtime = std::fs::metadata(&program).unwrap().modified().unwrap();
        let first = program_digest(&program).unwrap();
        assert_eq!(program_digest(&program).unwrap(), first, "remembered digest differs");
        std::fs::write(&program, b"migrations v2 (more)").unwrap();
        std::fs::File::options().write(true).open(&program).unwrap().set_modified(mtime).unwrap();
        assert_ne!(program_digest(&program).unwrap(), first, "a stale digest was used");
        assert_eq!(program_digest(&program).unwrap(), digest(&b"migrations v2 (more)"[..]));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
