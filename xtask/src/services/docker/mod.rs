//! The Docker backend: carries out a plan as a Compose project. The Compose file and
//! Dockerfiles are generated from the manifest ([`generate`]); the images copy the
//! host's build onto a base of the host's OS release ([`images`], [`bootstrap`]); Compose
//! starts the containers in the manifest's order (healthchecks, migrations first), and
//! readiness is xtask's own identity probe on the ports published on 127.0.0.1.
//!
//! Each state directory has its own project name, and every container and network is
//! labelled with the state directory, so runs from two clones never collide and
//! `services down --backend docker` finds what a killed run left.

pub mod bootstrap;
pub mod compose;
pub mod generate;
pub mod images;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};
use xshell::{Shell, cmd};

use super::manifest::{self, Manifest};
use super::plan::{self, Plan, PlannedService};
use super::state::{self, Database, ServiceRecord, State, unix_now};
use super::{Backend, Session, Teardown, UpOptions, logs, readiness};
use crate::sys::error::UserError;
use crate::sys::{error, fs, interrupts, paths};
use crate::timings::Timings;
use compose::Compose;
use generate::{DATABASE_SERVICE, MIGRATE_SERVICE, STATE_DIR_LABEL, vars};

/// The Docker backend's flags.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Never pull; use the local base image.
    pub offline: bool,
    /// The base image of the service images, instead of the host's release.
    pub base_image: Option<String>,
    /// Rebuild the service images without the build cache (bench: a cold cache).
    pub rebuild: bool,
}

/// What `down` from another shell needs: the project and how to reach it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DockerRecord {
    pub project: String,
    pub compose_file: PathBuf,
    pub compose: Compose,
}

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

/// One line when no Docker engine answers: the Docker backend needs one, native none.
pub fn ensure_engine() -> anyhow::Result<String> {
    let out = Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .stdin(Stdio::null())
        .output();
    match out {
        Ok(out) if out.status.success() => {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        }
        Ok(out) => {
            let why = String::from_utf8_lossy(&out.stderr);
            let why = why.lines().find(|l| !l.trim().is_empty()).unwrap_or("no answer").trim();
            crate::user_error!(
                "no Docker engine is reachable ({why}); the Docker backend needs one, `cargo xtask ci-native` needs none"
            )
        }
        Err(_) => crate::user_error!(
            "`docker` is not installed; the Docker backend needs a Docker engine, `cargo xtask ci-native` needs none"
        ),
    }
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
    let plan = super::plan_with(&manifest, options, &plan::FilesHere)?;
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
        let copies = generate::context_copies(&plan, &paths::root());
        images::stage(&images::context_dir(&options.state_dir), &files_dir, &copies)?;
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
    let mut session = Session::begin(state)?;
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

    docker_start(&[id_of(DATABASE_SERVICE)?])?;
    let database = published(&project, DATABASE_SERVICE, 5432)?;
    starter.wait_until(|| {
        Ok(crate::services::native::postgres::accepts_connections(
            database,
            "postgres",
            &manifest.database_name,
        ))
    })?;
    session.state.database = Some(Database::Container { url: database_url(database) });
    session.state.save()?;
    timings.add("database", started.elapsed());

    if plan.migrate.is_some() {
        let started = Instant::now();
        let migrate = id_of(MIGRATE_SERVICE)?;
        docker_start(std::slice::from_ref(&migrate))?;
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
        docker_start(&wave_ids)?;
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
            std::thread::sleep(readiness::PERIOD);
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
            let addr = published(self.project, name, port)?;
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

/// `docker start` of created containers.
fn docker_start(ids: &[String]) -> anyhow::Result<()> {
    let sh = Shell::new()?;
    cmd!(sh, "docker start {ids...}")
        .quiet()
        .ignore_stdout()
        .run()
        .context("starting containers")?;
    Ok(())
}

/// The host address of `service`'s published container port.
fn published(project: &str, service: &str, port: u16) -> anyhow::Result<SocketAddr> {
    containers(project)?
        .iter()
        .find(|c| c.service == service)
        .and_then(|c| c.published(port))
        .with_context(|| format!("`{service}` publishes no port {port} on 127.0.0.1"))
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
            let tail =
                container_log(&container.id).map(|t| logs::tail_of(&t, 30)).unwrap_or_default();
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

/// A container of a project, as `docker ps` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Container {
    pub id: String,
    pub service: String,
    pub project: String,
    /// `created`, `running`, `restarting`, `exited`, ...
    pub state: String,
    /// Docker's status line: `Up 2 seconds`, `Exited (1) 3 seconds ago`.
    pub status: String,
    /// `127.0.0.1:49153->8080/tcp, ...`
    pub ports: String,
}

impl Container {
    pub fn exit_code(&self) -> Option<i32> {
        if self.state != "exited" && self.state != "dead" {
            return None;
        }
        let inside = self.status.split_once('(')?.1.split_once(')')?.0;
        inside.trim().parse().ok()
    }

    pub fn is_running(&self) -> bool {
        matches!(self.state.as_str(), "running" | "restarting" | "created" | "paused")
    }

    /// The host address that container port `port` is published on.
    pub fn published(&self, port: u16) -> Option<SocketAddr> {
        self.ports.split(',').map(str::trim).find_map(|mapping| {
            let (host, inside) = mapping.split_once("->")?;
            (inside == format!("{port}/tcp")).then(|| host.parse().ok())?
        })
    }
}

/// What `docker ps` prints per container: named fields only. (`{{json .}}` would include
/// the size, which the engine computes per container: seconds on some storage drivers.)
const PS_FORMAT: &str = concat!(
    r#"{"ID":{{json .ID}},"State":{{json .State}},"Status":{{json .Status}},"#,
    r#""Ports":{{json .Ports}},"Service":{{json (.Label "com.docker.compose.service")}},"#,
    r#""Project":{{json (.Label "com.docker.compose.project")}}}"#
);

/// Parses `docker ps --format PS_FORMAT` lines.
pub fn parse_ps(text: &str) -> Vec<Container> {
    text.lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .map(|v| {
            let field = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or_default().to_string();
            Container {
                id: field("ID"),
                service: field("Service"),
                project: field("Project"),
                state: field("State"),
                status: field("Status"),
                ports: field("Ports"),
            }
        })
        .collect()
}

fn ps(filter: &str) -> anyhow::Result<Vec<Container>> {
    let sh = Shell::new()?;
    let out = cmd!(sh, "docker ps --all --no-trunc --filter {filter} --format {PS_FORMAT}")
        .quiet()
        .read()
        .context("listing containers")?;
    Ok(parse_ps(&out))
}

/// The containers of a Compose project.
pub fn containers(project: &str) -> anyhow::Result<Vec<Container>> {
    ps(&format!("label=com.docker.compose.project={project}"))
}

fn container_log(id: &str) -> Option<String> {
    let out = Command::new("docker").args(["logs", id]).output().ok()?;
    let mut text = String::from_utf8_lossy(&out.stdout).to_string();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    Some(text)
}

fn record(state: &State) -> Option<&DockerRecord> {
    state.docker.as_ref()
}

pub fn alive_services(state: &State) -> Vec<String> {
    let Some(record) = record(state) else { return Vec::new() };
    containers(&record.project)
        .unwrap_or_default()
        .into_iter()
        .filter(|c| c.is_running())
        .map(|c| c.service)
        .collect()
}

pub fn anything_alive(state: &State) -> bool {
    record(state).is_some_and(|r| {
        containers(&r.project).is_ok_and(|cs| cs.iter().any(Container::is_running))
    })
}

pub fn dead_services(state: &State) -> Vec<String> {
    let alive = alive_services(state);
    state.services.iter().filter(|s| !alive.contains(&s.name)).map(|s| s.name.clone()).collect()
}

/// Saves each container's log to `<state>/logs/<service>.log`, then removes the project
/// (containers, network, volumes).
pub fn teardown(state: &State, grace: Duration, save_logs: bool) -> Teardown {
    let mut report = Teardown::default();
    let Some(record) = record(state) else { return report };
    if save_logs {
        let dir = state::log_dir(&state.dir);
        let _ = std::fs::create_dir_all(&dir);
        for container in containers(&record.project).unwrap_or_default() {
            if let Some(text) = container_log(&container.id) {
                let _ = std::fs::write(dir.join(format!("{}.log", container.service)), text);
            }
        }
    }
    let seconds = grace.as_secs_f64().ceil().max(1.0).to_string();
    let down = record
        .compose
        .command(&record.project, &record.compose_file)
        .args(["down", "--volumes", "--remove-orphans", "--timeout", &seconds])
        .stdin(Stdio::null())
        .output();
    let removed = matches!(&down, Ok(out) if out.status.success());
    if !removed || !containers(&record.project).unwrap_or_default().is_empty() {
        if let Ok(out) = &down
            && !out.status.success()
        {
            report.foreign.push(format!(
                "docker compose down failed ({}); removed the project's containers directly",
                String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or_default().trim()
            ));
        }
        remove_by_label(&format!("com.docker.compose.project={}", record.project));
    }
    report
}

/// Removes containers and networks carrying `label`, without Compose.
fn remove_by_label(label: &str) {
    let filter = format!("label={label}");
    let ids: Vec<String> = ps(&filter).unwrap_or_default().into_iter().map(|c| c.id).collect();
    if !ids.is_empty() {
        let _ = Command::new("docker").args(["rm", "--force", "--volumes"]).args(&ids).output();
    }
    if let Ok(out) =
        Command::new("docker").args(["network", "ls", "--quiet", "--filter", &filter]).output()
    {
        let networks: Vec<String> =
            String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect();
        if !networks.is_empty() {
            let _ = Command::new("docker").args(["network", "rm"]).args(&networks).output();
        }
    }
}

/// `services down --backend docker` without a state file: removes every project whose
/// containers carry this state directory's label; returns how many.
pub fn down_leftovers(state_dir: &Path) -> anyhow::Result<usize> {
    ensure_engine()?;
    let mut projects: Vec<String> =
        ps(&format!("label={STATE_DIR_LABEL}={}", state_dir.display()))?
            .into_iter()
            .map(|c| c.project)
            .collect();
    projects.sort();
    projects.dedup();
    for project in &projects {
        remove_by_label(&format!("com.docker.compose.project={project}"));
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
    let status = cmd.status().context("running docker compose logs")?;
    if !status.success() {
        return Err(error::Exit::of(status).into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ps_lines_give_service_state_exit_code_and_ports() {
        let text = r#"{"ID":"abc123","State":"running","Status":"Up 2 seconds","Ports":"127.0.0.1:49153->8080/tcp","Service":"orchestration","Project":"tasker-1"}
{"ID":"def456","State":"exited","Status":"Exited (0) 1 second ago","Ports":"","Service":"migrate","Project":"tasker-1"}
{"ID":"0a1","State":"exited","Status":"Exited (101) 1 second ago","Ports":"","Service":"rust-worker","Project":"tasker-1"}"#;
        let containers = parse_ps(text);
        assert_eq!(containers.len(), 3);
        assert_eq!(containers[0].service, "orchestration");
        assert_eq!(containers[0].project, "tasker-1");
        assert!(containers[0].is_running());
        assert_eq!(containers[0].exit_code(), None);
        assert_eq!(containers[0].published(8080), Some("127.0.0.1:49153".parse().unwrap()));
        assert_eq!(containers[0].published(8081), None);
        assert_eq!(containers[1].exit_code(), Some(0));
        assert_eq!(containers[2].exit_code(), Some(101));
        assert!(!containers[2].is_running());
    }

    #[test]
    fn each_state_directory_has_its_own_project() {
        let a = project_name(Path::new("/clone-a/target/xtask"));
        let b = project_name(Path::new("/clone-b/target/xtask"));
        assert_ne!(a, b);
        assert_eq!(a, project_name(Path::new("/clone-a/target/xtask")));
        assert!(a.starts_with("tasker-") && a.len() == 17, "{a}");
    }
}
