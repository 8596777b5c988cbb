//! The Docker backend: carries out a plan as a Compose project. The Compose file and
//! Dockerfiles are generated from the manifest ([`generate`]); the images copy the
//! host's build onto a base of the host's OS release ([`images`], [`bootstrap`]); Compose
//! starts the containers in the manifest's order (healthchecks, migrations first), and
//! readiness is xtask's own identity probe on the ports published on 127.0.0.1.
//!
//! Each state directory has its own project name, and every container and network is
//! labelled with the state directory, so runs from two clones never collide and
//! `services down --backend docker` finds what a killed run left.
//!
//! This file is the session lifecycle; the `docker` command lines it needs are the
//! engine client's ([`engine`]).

pub mod bootstrap;
mod compose;
mod engine;
pub mod generate;
mod images;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use super::manifest::{self, Manifest};
use super::plan::{self, Plan, PlannedService};
use super::session::{Lifecycle, Session, Teardown, UpOptions};
use super::state::{
    self, Backend, Compose, Database, DockerRecord, ServiceRecord, State, unix_now,
};
use super::{logs, pg_probe, readiness};
use crate::sys::command::Run as _;
use crate::sys::error::UserError;
use crate::sys::{error, fs, interrupts, paths};
use crate::timings::Timings;
use engine::{Container, containers, published};
use generate::{DATABASE_SERVICE, MIGRATE_SERVICE, STATE_DIR_LABEL, vars};

/// How often a Compose step or the database is checked while starting (each check may
/// ask the engine).
const DOCKER_POLL: Duration = Duration::from_millis(50);

pub use engine::ensure_engine;

/// The Compose project of a state directory: stable, so a later run (or `down`) finds
/// what an earlier one left; distinct per directory, so two clones never collide.
pub fn project_name(state_dir: &Path) -> String {
    format!("tasker-{}", &paths::short_hash(&state_dir.display().to_string())[..10])
}

/// The directory holding the generated files for `manifest_path`: `docker/` of the
/// workspace for the committed manifest, else one inside the state directory.
pub fn files_dir(manifest_path: &Path, state_dir: &Path) -> PathBuf {
    if manifest_path == manifest::default_path() {
        paths::root().join("docker")
    } else {
        state_dir.join("docker")
    }
}

/// Brings the generated files in `dir` up to date with `manifest`; returns the ones it
/// rewrote (none when `check`, which only compares and reports).
pub fn refresh_files(manifest: &Manifest, dir: &Path, check: bool) -> anyhow::Result<Vec<PathBuf>> {
    let source = paths::display_path(&manifest.path);
    let root = paths::root();
    let target_dir = paths::target_dir();
    let host = generate::Host { root: &root, target_dir: &target_dir };
    let files = generate::files(manifest, &source, &host).map_err(UserError)?;
    let mut changed = Vec::new();
    for file in files {
        let path = dir.join(file.name);
        if std::fs::read_to_string(&path).ok().as_deref() == Some(file.text.as_str()) {
            continue;
        }
        if !check {
            fs::write_atomic(&path, &file.text)?;
            if file.executable {
                use std::os::unix::fs::PermissionsExt as _;
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
            }
        }
        changed.push(path);
    }
    Ok(changed)
}

/// Everything checked before the Docker backend starts anything.
pub struct Prepared {
    plan: Plan,
    manifest: Manifest,
    compose: Compose,
    files_dir: PathBuf,
    base_image: String,
}

/// Checks the engine, Compose, the plan, the generated files and leftovers, and makes
/// sure a base image exists (pulled or bootstrapped: the `bootstrap` phase).
pub fn prepare(
    manifest: Manifest,
    options: &UpOptions,
    timings: &mut Timings,
) -> anyhow::Result<Prepared> {
    let engine = ensure_engine()?;
    let plan = options.plan(&manifest, &plan::FilesHere)?;
    let project = project_name(&options.state_dir);
    if !containers(&project)?.is_empty() {
        crate::user_error!(
            "containers of Compose project {project} (state dir {}) exist but no session records them: run `cargo xtask services down --backend docker{}` first",
            paths::display_path(&options.state_dir),
            match options.state_dir == paths::xtask_dir() {
                true => String::new(),
                false => format!(" --state-dir {}", options.state_dir.display()),
            }
        );
    }
    let compose = compose::find_or_install()?;
    eprintln!("xtask: Docker engine {engine}");
    let files_dir = files_dir(&manifest.path, &options.state_dir);
    for written in refresh_files(&manifest, &files_dir, false)? {
        eprintln!("xtask: regenerated {}", paths::display_path(&written));
    }
    let started = Instant::now();
    let base_image =
        images::resolve_base(options.docker.base_image.as_deref(), options.docker.offline)?;
    timings.add("bootstrap", started.elapsed());
    Ok(Prepared { plan, manifest, compose, files_dir, base_image })
}

/// A run's values for the Compose variables, and the secret among them.
struct RunVars {
    env: Vec<(String, String)>,
    password: String,
    instance_ids: BTreeMap<String, String>,
}

fn run_vars(
    plan: &Plan,
    options: &UpOptions,
    project: &str,
    base: &str,
) -> anyhow::Result<RunVars> {
    let password = crate::sys::secrets::random_token(16)?;
    let context = images::context_dir(&options.state_dir);
    let mut env = vec![
        (vars::CONTEXT.to_string(), context.display().to_string()),
        (vars::BASE_IMAGE.to_string(), base.to_string()),
        (vars::APP_IMAGE.to_string(), format!("tasker-ci-app:{project}")),
        (vars::POSTGRES_IMAGE.to_string(), format!("tasker-ci-postgres:{project}")),
        (vars::DB_PASSWORD.to_string(), password.clone()),
        (vars::STATE_DIR.to_string(), options.state_dir.display().to_string()),
    ];
    let mut instance_ids = BTreeMap::new();
    let names = plan
        .migrate
        .iter()
        .map(|m| m.name.clone())
        .chain(plan.services().map(|s| s.process.name.clone()));
    for name in names {
        let id =
            format!("{name}-{}-{}", std::process::id(), &crate::sys::secrets::random_token(4)?);
        env.push((vars::instance_id(&name), id.clone()));
        instance_ids.insert(name, id);
    }
    if options.fixed_ports {
        for service in plan.services() {
            let port = service.fixed_port.expect("plan checked");
            env.push((vars::host_port(&service.process.name), port.to_string()));
        }
    }
    Ok(RunVars { env, password, instance_ids })
}

/// Stages the context, builds the images, starts the project, waits for readiness.
/// Phases: images, then as natively database, migrate, start and ready.
pub fn start(
    prepared: Prepared,
    options: &UpOptions,
    timings: &mut Timings,
) -> anyhow::Result<Session> {
    let Prepared { plan, manifest, compose, files_dir, base_image } = prepared;
    interrupts::check_interrupted()?;
    let project = project_name(&options.state_dir);
    let compose_file = files_dir.join(generate::COMPOSE_FILE);
    let run = run_vars(&plan, options, &project, &base_image)?;
    let command = || {
        let mut cmd = compose.command(&project, &compose_file);
        cmd.envs(run.env.iter().map(|(k, v)| (k, v)));
        cmd
    };

    let started = Instant::now();
    crate::github::group("images", || -> anyhow::Result<()> {
        let copies = plan::context_copies(&plan, &paths::root());
        images::stage(&images::context_dir(&options.state_dir), &files_dir, &copies)?;
        // One build at a time in this checkout: runs side by side (the Docker backend's
        // tests) with the same content then export each new layer once, and the later
        // ones find it (an export is seconds of CPU on a naive-diff storage driver).
        let _building = crate::sys::fs::lock_exclusive(
            &paths::xtask_dir().join("docker-image-build.lock"),
            "xtask: waiting for another run that builds images",
        )?;
        let postgres_image = format!("tasker-ci-postgres:{project}");
        images::build(
            command(),
            compose.build_args(),
            DATABASE_SERVICE,
            &postgres_image,
            options.docker.rebuild,
        )?;
        interrupts::check_interrupted()?;
        let app_owner = match &plan.migrate {
            Some(_) => MIGRATE_SERVICE.to_string(),
            None => manifest.services.first().map(|s| s.name.clone()).unwrap_or_default(),
        };
        let app_image = format!("tasker-ci-app:{project}");
        images::build(
            command(),
            compose.build_args(),
            &app_owner,
            &app_image,
            options.docker.rebuild,
        )?;
        images::prune_dangling();
        Ok(())
    })?;
    timings.add("images", started.elapsed());
    interrupts::check_interrupted()?;

    let state = State::new(&options.state_dir, Backend::Docker, plan.excluded_tests.clone());
    let mut state = if options.detached { state } else { state.owned() };
    state.docker = Some(DockerRecord {
        project: project.clone(),
        compose_file: compose_file.clone(),
        compose: compose.clone(),
    });
    let mut session = Session::begin(state, &Docker)?;
    let logs = state::log_dir(&options.state_dir);
    std::fs::create_dir_all(&logs)?;
    let mut starter = Starter {
        project: &project,
        watch: Watch::new(&project),
        deadline: Instant::now() + readiness::scaled(options.timeout),
        timeout: options.timeout,
        logs: &logs,
        instance_ids: &run.instance_ids,
        started_unix: unix_now(),
    };
    let compose_log = logs.join("compose.log");
    let database_url = |addr: SocketAddr| {
        format!("postgres://postgres:{}@{addr}/{}", run.password, manifest.database_name)
    };
    let services: Vec<&String> = plan.services().map(|s| &s.process.name).collect();

    if !compose.is_v2() {
        // Compose v1 cannot create containers without waiting for their dependencies'
        // conditions, so it starts them itself, in the same order, by the healthchecks;
        // then xtask's probe.
        let started = Instant::now();
        let mut up = command();
        up.args(["up", "--detach", "--no-build"]).args(&services);
        starter.run_compose(up, &compose_log)?;
        let database = published(&project, DATABASE_SERVICE, 5432)?;
        session.state.database = Some(Database::Container { url: database_url(database) });
        for wave in &plan.waves {
            starter.record(&mut session, wave)?;
        }
        timings.add("start", started.elapsed());
        let started = Instant::now();
        starter.wait_ready(&session, 0)?;
        timings.add("ready", started.elapsed());
        return Ok(session);
    }

    // Compose creates the network and every container; xtask starts them in the
    // manifest's order and waits with its own probes, which are faster than Compose's
    // dependency polling (500 ms per hop) and need no healthcheck running every few
    // hundred milliseconds for the whole run.
    let started = Instant::now();
    let mut create = command();
    create.args(["up", "--no-start", "--no-build"]).args(&services);
    starter.run_compose(create, &compose_log)?;
    let ids: BTreeMap<String, String> =
        containers(&project)?.into_iter().map(|c| (c.service, c.id)).collect();
    let id_of = |service: &str| {
        ids.get(service)
            .cloned()
            .with_context(|| format!("Compose created no container for `{service}`"))
    };

    engine::start(&[id_of(DATABASE_SERVICE)?])?;
    let database = published(&project, DATABASE_SERVICE, 5432)?;
    starter.wait_until(|| {
        Ok(pg_probe::accepts_connections(database, "postgres", &manifest.database_name))
    })?;
    session.state.database = Some(Database::Container { url: database_url(database) });
    session.state.save()?;
    timings.add("database", started.elapsed());

    if plan.migrate.is_some() {
        let started = Instant::now();
        let migrate = id_of(MIGRATE_SERVICE)?;
        engine::start(std::slice::from_ref(&migrate))?;
        starter.wait_until(|| {
            Ok(containers(&project)?.iter().any(|c| c.id == migrate && c.exit_code() == Some(0)))
        })?;
        timings.add("migrate", started.elapsed());
    }

    for wave in &plan.waves {
        let started = Instant::now();
        let earlier = session.state.services.len();
        let wave_ids: Vec<String> =
            wave.iter().map(|s| id_of(&s.process.name)).collect::<anyhow::Result<_>>()?;
        engine::start(&wave_ids)?;
        starter.record(&mut session, wave)?;
        timings.add("start", started.elapsed());
        let started = Instant::now();
        starter.wait_ready(&session, earlier)?;
        timings.add("ready", started.elapsed());
    }
    Ok(session)
}

/// What starting a project's containers needs at each step: the deadline, the watch
/// that fails at once when a container exits, and the values services are recorded with.
struct Starter<'a> {
    project: &'a str,
    watch: Watch<'a>,
    deadline: Instant,
    timeout: Duration,
    logs: &'a Path,
    instance_ids: &'a BTreeMap<String, String>,
    started_unix: u64,
}

impl Starter<'_> {
    fn timed_out(&self) -> anyhow::Error {
        anyhow::anyhow!(
            "not ready after {:.0?} (--timeout, times the CI multiplier)",
            readiness::scaled(self.timeout)
        )
    }

    /// Polls `done` until it is true, a container exits, the deadline passes or a signal
    /// arrives.
    fn wait_until(&mut self, mut done: impl FnMut() -> anyhow::Result<bool>) -> anyhow::Result<()> {
        loop {
            if done()? {
                return Ok(());
            }
            if let Some(failure) = self.watch.poll(false)? {
                return Err(failure.into());
            }
            interrupts::check_interrupted()?;
            if Instant::now() >= self.deadline {
                return Err(self.timed_out());
            }
            std::thread::sleep(DOCKER_POLL);
        }
    }

    /// Runs a Compose command with its output in `log`, watching the containers while it
    /// runs; a failure shows Compose's own message.
    fn run_compose(&mut self, mut cmd: Command, log: &Path) -> anyhow::Result<()> {
        let file = std::fs::File::create(log)?;
        cmd.stdin(Stdio::null()).stdout(file.try_clone()?).stderr(file);
        let mut child = cmd.spawn().context("running docker compose")?;
        let result = self.wait_until(|| Ok(child.try_wait()?.is_some()));
        if result.is_err() {
            let _ = child.kill();
            let _ = child.wait();
            return result;
        }
        let status = child.wait()?;
        if !status.success() {
            bail!(
                "docker compose failed ({status}); last lines of {}:\n{}",
                paths::display_path(log),
                logs::tail(log, 15)
            );
        }
        Ok(())
    }

    /// Records the services of `wave` (started now) with their published addresses. A
    /// container that already exited publishes nothing: its exit is the error.
    fn record(&mut self, session: &mut Session, wave: &[PlannedService]) -> anyhow::Result<()> {
        if let Some(failure) = self.watch.poll(true)? {
            return Err(failure.into());
        }
        for service in wave {
            let name = &service.process.name;
            let port = service.fixed_port.unwrap_or(generate::DEFAULT_PORT);
            let addr = match published(self.project, name, port) {
                Ok(addr) => addr,
                Err(no_port) => return Err(self.exited_since(no_port)),
            };
            session.state.services.push(ServiceRecord {
                name: name.clone(),
                url: format!("http://{addr}"),
                addr,
                instance_id: self.instance_ids[name].clone(),
                health_path: service.health_path.clone(),
                identity: service.identity.clone(),
                export: service.export.clone(),
                started_unix: self.started_unix,
                log: self.logs.join(format!("{name}.log")),
                process: None,
            });
        }
        session.state.save()
    }

    /// The error for a service that publishes no port: a container that exited after the
    /// poll above publishes none either, and its exit (code and log) is the real error.
    /// Docker may list the container as running for a moment after its process ended, so
    /// it is asked a few times (about a second) before the missing port is the answer.
    fn exited_since(&mut self, no_port: anyhow::Error) -> anyhow::Error {
        for attempt in 0..4 {
            if attempt > 0 {
                std::thread::sleep(Duration::from_millis(300));
            }
            match self.watch.poll(true) {
                Ok(Some(failure)) => return failure.into(),
                Ok(None) => {}
                Err(_) => break,
            }
        }
        no_port
    }

    /// xtask's identity probe of every recorded service but the first `earlier` (ready).
    fn wait_ready(&mut self, session: &Session, earlier: usize) -> anyhow::Result<()> {
        let watch = &mut self.watch;
        let mut exited = || watch.poll(false).ok().flatten();
        let waited = readiness::scaled(self.timeout);
        readiness::wait_for_services(
            &session.state.services,
            earlier,
            self.deadline,
            waited,
            &mut exited,
        )
    }
}

/// Watches a project's containers while it starts: one that exits (the migrate step with
/// an error, any other at all) is a startup failure, reported with its exit code and the
/// end of its log. Polls Docker at most every 300 ms.
struct Watch<'a> {
    project: &'a str,
    last: Option<Instant>,
}

impl<'a> Watch<'a> {
    fn new(project: &'a str) -> Watch<'a> {
        Watch { project, last: None }
    }

    fn poll(&mut self, now: bool) -> anyhow::Result<Option<readiness::Failure>> {
        if !now && self.last.is_some_and(|t| t.elapsed() < Duration::from_millis(300)) {
            return Ok(None);
        }
        self.last = Some(Instant::now());
        for container in containers(self.project)? {
            let Some(code) = container.exit_code() else { continue };
            if container.service == MIGRATE_SERVICE && code == 0 {
                continue;
            }
            let tail = engine::container_log(&container.id)
                .map(|t| logs::tail_of(&t, 30))
                .unwrap_or_default();
            return Ok(Some(readiness::Failure::Exited {
                name: container.service.clone(),
                status: format!("exit code {code}"),
                log: format!("`docker logs {}`", &container.id[..12.min(container.id.len())]),
                tail,
            }));
        }
        Ok(None)
    }
}

fn record(state: &State) -> Option<&DockerRecord> {
    state.docker.as_ref()
}

/// The Docker backend's side of a session: a Compose project, asked through the engine.
pub struct Docker;

impl Lifecycle for Docker {
    fn stop(&self, state: &State, grace: Duration, save_logs: bool) -> Teardown {
        stop(state, grace, save_logs)
    }

    fn alive_services(&self, state: &State) -> Vec<String> {
        let Some(record) = record(state) else { return Vec::new() };
        containers(&record.project)
            .unwrap_or_default()
            .into_iter()
            .filter(|c| c.is_running())
            .map(|c| c.service)
            .collect()
    }

    fn anything_alive(&self, state: &State) -> bool {
        record(state).is_some_and(|r| {
            containers(&r.project).is_ok_and(|cs| cs.iter().any(Container::is_running))
        })
    }
}

/// Saves each container's log to `<state>/logs/<service>.log`, then removes the project
/// (containers, network, volumes).
fn stop(state: &State, grace: Duration, save_logs: bool) -> Teardown {
    let mut report = Teardown::default();
    let Some(record) = record(state) else { return report };
    if save_logs {
        let dir = state::log_dir(&state.dir);
        let _ = std::fs::create_dir_all(&dir);
        for container in containers(&record.project).unwrap_or_default() {
            if let Some(text) = engine::container_log(&container.id) {
                let _ = std::fs::write(dir.join(format!("{}.log", container.service)), text);
            }
        }
    }
    let seconds = grace.as_secs_f64().ceil().max(1.0).to_string();
    let down = record
        .compose
        .command(&record.project, &record.compose_file)
        .args(["down", "--volumes", "--remove-orphans", "--timeout", &seconds])
        .capture();
    if down.is_err() || !containers(&record.project).unwrap_or_default().is_empty() {
        if let Err(failure) = &down
            && failure.status.is_some()
        {
            report.foreign.push(format!(
                "docker compose down failed ({}); removed the project's containers directly",
                failure.stderr.lines().last().unwrap_or_default().trim()
            ));
        }
        engine::remove_by_label(&format!("com.docker.compose.project={}", record.project));
    }
    report
}

/// `services down --backend docker` without a state file: removes every project whose
/// containers carry this state directory's label; returns how many.
pub fn down_leftovers(state_dir: &Path) -> anyhow::Result<usize> {
    ensure_engine()?;
    let mut projects: Vec<String> =
        engine::ps(&format!("label={STATE_DIR_LABEL}={}", state_dir.display()))?
            .into_iter()
            .map(|c| c.project)
            .collect();
    projects.sort();
    projects.dedup();
    for project in &projects {
        engine::remove_by_label(&format!("com.docker.compose.project={project}"));
    }
    Ok(projects.len())
}

/// `services logs` of a Docker session: Compose's logs while it runs.
pub fn print_logs(state: &State, name: Option<&str>, follow: bool) -> anyhow::Result<()> {
    let record = record(state).context("the state file names no Compose project")?;
    if let Some(name) = name {
        let known: Vec<&str> = [DATABASE_SERVICE, MIGRATE_SERVICE]
            .into_iter()
            .chain(state.services.iter().map(|s| s.name.as_str()))
            .collect();
        if !known.contains(&name) {
            crate::user_error!("no service `{name}` in this session (have: {})", known.join(", "));
        }
    }
    let mut cmd = record.compose.command(&record.project, &record.compose_file);
    cmd.args(["logs", "--no-color"]);
    if follow {
        cmd.arg("--follow");
    }
    cmd.args(name);
    match cmd.run() {
        Ok(()) => Ok(()),
        Err(failure) => match failure.status {
            Some(status) => Err(error::Exit::of(status).into()),
            None => Err(failure).context("running docker compose logs"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_state_directory_has_its_own_project() {
        let a = project_name(Path::new("/clone-a/target/xtask"));
        let b = project_name(Path::new("/clone-b/target/xtask"));
        assert_ne!(a, b);
        assert_eq!(a, project_name(Path::new("/clone-a/target/xtask")));
        assert!(a.starts_with("tasker-") && a.len() == 17, "{a}");
    }
}
