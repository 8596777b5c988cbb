//! `cargo xtask services up | down | status | logs | run | bench`: the services of
//! `config/services.toml`, natively or in Docker, for tests run by hand. The flags live
//! here, and what `up`, `down`, `status` and `logs` print; the work is the session API
//! of [`crate::services`] (with its supervisor, `run`, and its benchmark, `bench`).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::github;
use crate::services::session::DEFAULT_TIMEOUT_SECS;
use crate::services::{self, Backend, DockerOptions, State, UpOptions, manifest, readiness, state};
use crate::sys::{interrupts, paths, process};
use crate::timings::Timings;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

/// Options shared by every subcommand.
#[derive(clap::Args, Clone)]
pub struct Common {
    /// Where state, logs and services.env live (default: target/xtask). Separate
    /// directories allow separate sets of services side by side
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// The services manifest (default: config/services.toml)
    #[arg(long, value_name = "FILE")]
    pub manifest: Option<PathBuf>,
}

impl Common {
    pub fn state_dir(&self) -> PathBuf {
        paths::absolute(self.state_dir.clone().unwrap_or_else(paths::xtask_dir))
    }
    pub fn manifest(&self) -> PathBuf {
        paths::absolute(self.manifest.clone().unwrap_or_else(manifest::default_path))
    }
}

#[derive(clap::Args, Clone)]
pub struct Start {
    /// Start only these services (and what they depend on)
    #[arg(long, value_name = "NAME", num_args = 1..)]
    pub only: Vec<String>,
    /// Leave these services out, and their tests (the manifest's `tests` filter)
    #[arg(long, value_name = "NAME", num_args = 1..)]
    pub without: Vec<String>,
    /// Use binaries of the release profile
    #[arg(long)]
    pub release: bool,
    /// Use each service's `fixed_port` from the manifest instead of free ports
    #[arg(long)]
    pub fixed_ports: bool,
    /// Seconds to wait for all services to be ready (times TASKER_TEST_TIMEOUT_MULTIPLIER, or 3 when CI is set)
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_TIMEOUT_SECS)]
    pub timeout: u64,
}

impl Start {
    pub fn options(&self, common: &Common, backend: Backend, docker: DockerFlags) -> UpOptions {
        UpOptions {
            manifest: common.manifest(),
            state_dir: common.state_dir(),
            only: self.only.clone(),
            // An empty name (a workflow passing an empty output) leaves nothing out.
            without: self.without.iter().filter(|n| !n.is_empty()).cloned().collect(),
            release: self.release,
            fixed_ports: self.fixed_ports,
            timeout: Duration::from_secs(self.timeout),
            backend,
            docker: docker.into(),
            detached: false,
        }
    }
}

/// What `up` and `run` start: a backend and the options of a session.
#[derive(clap::Args)]
pub struct SessionArgs {
    /// What runs the services
    #[arg(long, value_enum, default_value_t = Backend::Native)]
    backend: Backend,
    #[command(flatten)]
    start: Start,
    #[command(flatten)]
    docker: DockerFlags,
    #[command(flatten)]
    common: Common,
}

impl SessionArgs {
    fn options(self) -> UpOptions {
        self.start.options(&self.common, self.backend, self.docker)
    }
}

/// How the Docker backend finds its base image.
#[derive(clap::Args, Clone, Default)]
pub struct DockerFlags {
    /// Docker backend: never pull; use (and if needed build) the local base image
    #[arg(long)]
    pub offline: bool,
    /// Docker backend: the base image of the service images (default: this machine's OS
    /// release, pulled, or built locally by `cargo xtask docker bootstrap`)
    #[arg(long, value_name = "IMAGE")]
    pub base_image: Option<String>,
}

impl From<DockerFlags> for DockerOptions {
    fn from(flags: DockerFlags) -> DockerOptions {
        DockerOptions { offline: flags.offline, base_image: flags.base_image, rebuild: false }
    }
}

#[derive(clap::Subcommand)]
enum Command {
    /// Start the database, run migrations and start the services; print their URLs
    #[command(
        after_help = "\
Natively (the default), without DATABASE_URL a throwaway PostgreSQL is started (and removed
by `down`). With --backend docker, the services and PostgreSQL run as a Compose project
whose ports are published on 127.0.0.1.
Writes <state-dir>/services.env (mode 0600: it holds the database password; and appends to
$GITHUB_ENV when set, with the password masked in GitHub's logs), so tests can run by
hand: `set -a; . target/xtask/services.env; set +a; cargo nextest run ...`. What it prints
has the password redacted.",
        visible_alias = "start"
    )]
    Up {
        #[command(flatten)]
        session: SessionArgs,
    },
    /// Stop what `up` started (verified by pid and start time, or by Compose project) and remove the throwaway database
    #[command(visible_alias = "stop")]
    Down {
        /// Seconds between SIGTERM and SIGKILL
        #[arg(long, value_name = "SECS", default_value_t = 5.0)]
        grace: f64,
        /// Without a state file, also look for containers a killed Docker run left behind
        #[arg(long, value_enum)]
        backend: Option<Backend>,
        #[command(flatten)]
        common: Common,
    },
    /// Show each service's pid or container, port, health and uptime
    Status {
        /// Check that the session runs on this backend (read from the state file anyway)
        #[arg(long, value_enum)]
        backend: Option<Backend>,
        #[command(flatten)]
        common: Common,
    },
    /// Print a service's log (all logs without NAME)
    Logs {
        /// A service of the manifest, or `migrate` or `postgres`
        name: Option<String>,
        /// Keep printing as the log grows
        #[arg(long, short)]
        follow: bool,
        /// Check that the session runs on this backend (read from the state file anyway)
        #[arg(long, value_enum)]
        backend: Option<Backend>,
        #[command(flatten)]
        common: Common,
    },
    /// Start the services, run a command with their URLs in its environment, stop them
    #[command(after_help = "\
The command gets the variables `up` writes to services.env (the services' URLs and
DATABASE_URL) in its environment; everything is stopped when it ends, fails or is
interrupted, and its exit code is this command's. Binaries are built first with --build
(`cargo build --workspace --bins --lib`, plus --release when given).

Examples:
  cargo xtask services run --build --release --without ruby-worker -- cargo run --release -q -p tasker-core --example load_bench
  cargo xtask services run -- cargo nextest run -p tasker-core --features test-services")]
    Run {
        /// Build the services' binaries first
        #[arg(long)]
        build: bool,
        #[command(flatten)]
        session: SessionArgs,
        /// The command to run, after `--`
        #[arg(last = true, required = true, value_name = "COMMAND")]
        command: Vec<String>,
    },
    /// Measure the overhead of each backend: up -> ready and teardown, several runs
    #[command(after_help = "\
Binaries are not built here (build them first); the numbers are what a backend adds
around the tests. With several --backend flags the runs alternate between them, so both
see the same machine load. For Docker, `images` is the time to stage and build the
service images (cached unless --cold).

Examples:
  cargo xtask services bench --runs 15
  cargo xtask services bench --backend native --backend docker --runs 5
  cargo xtask services bench --backend docker --cold --runs 3")]
    Bench {
        /// How many up/down cycles to measure per backend
        #[arg(long, default_value_t = 10)]
        runs: usize,
        /// The backends to measure (repeat the flag for several)
        #[arg(long, value_enum, default_values_t = [Backend::Native])]
        backend: Vec<Backend>,
        /// Docker: rebuild the service images without the build cache in every run
        #[arg(long)]
        cold: bool,
        #[command(flatten)]
        start: Start,
        #[command(flatten)]
        docker: DockerFlags,
        #[command(flatten)]
        common: Common,
    },
}

pub fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        Command::Up { session } => up(&session.options()),
        Command::Down { grace, backend, common } => {
            down(&common, backend, Duration::from_secs_f64(grace.max(0.0)))
        }
        Command::Status { backend, common } => status(&common, backend),
        Command::Logs { name, follow, backend, common } => {
            logs(&common, backend, name.as_deref(), follow)
        }
        Command::Run { build, session, command } => {
            services::run::run(&session.options(), build, &command)
        }
        Command::Bench { runs, backend, cold, start, docker, common } => services::bench::run(
            runs,
            &backend,
            cold,
            &start.options(&common, Backend::Native, docker),
        ),
    }
}

fn up(options: &UpOptions) -> anyhow::Result<()> {
    interrupts::catch_interrupts();
    let options = &UpOptions { detached: true, ..options.clone() };
    // Held until this process exits; the services it leaves running do not inherit it.
    let _lock = state::StateLock::acquire(&options.state_dir)?;
    let mut timings = Timings::default();
    let began = Instant::now();
    let session = services::up(options, &mut timings)?;
    // Before detaching: if the exports cannot be written, the session still tears down.
    let exports = services::write_exports(&session.state, true)?;
    let state = session.detach();
    eprintln!(
        "xtask: {} service(s) ready in {:.2}s ({}, database {}); stop them with `{}`",
        state.services.len(),
        began.elapsed().as_secs_f64(),
        state.backend.name(),
        state.database.as_ref().map(services::Database::shown_url).unwrap_or_default(),
        services::down_command(&state.dir)
    );
    // The database password stays in the file (mode 0600): what is printed is redacted.
    let shown: Vec<(String, String)> =
        exports.iter().map(|(k, v)| (k.clone(), crate::sys::secrets::redact(v))).collect();
    print!("{}", github::env_file(&shown));
    eprintln!(
        "xtask: the values with the database password are in {} (`set -a; . {0}; set +a`)",
        paths::display_path(&state::env_file(&state.dir))
    );
    Ok(())
}

fn down(common: &Common, backend: Option<Backend>, grace: Duration) -> anyhow::Result<()> {
    let state_dir = common.state_dir();
    match services::down(&state_dir, grace)? {
        Some(report) => {
            for foreign in &report.foreign {
                eprintln!("warning: {foreign}");
            }
            if !report.killed.is_empty() {
                eprintln!("warning: needed SIGKILL after {grace:?}: {}", report.killed.join(", "));
            }
            eprintln!("xtask: stopped everything in {:.3}s", report.took.as_secs_f64());
        }
        None if backend == Some(Backend::Docker) => {
            match services::remove_docker_leftovers(&state_dir)? {
                0 => eprintln!(
                    "xtask: nothing to stop (no state in {} and no containers of it)",
                    paths::display_path(&state_dir)
                ),
                n => eprintln!("xtask: removed {n} Compose project(s) a killed run left behind"),
            }
        }
        None => {
            eprintln!("xtask: nothing to stop (no state in {})", paths::display_path(&state_dir))
        }
    }
    Ok(())
}

/// The session in the state directory, checked against `--backend` when given.
fn session_state(common: &Common, backend: Option<Backend>) -> anyhow::Result<Option<State>> {
    let state = State::load(&common.state_dir())?;
    if let (Some(state), Some(backend)) = (&state, backend)
        && state.backend != backend
    {
        crate::user_error!(
            "the session in {} runs on the {} backend, not {}: drop --backend",
            paths::display_path(&common.state_dir()),
            state.backend.name(),
            backend.name()
        );
    }
    Ok(state)
}

fn status(common: &Common, backend: Option<Backend>) -> anyhow::Result<()> {
    let Some(state) = session_state(common, backend)? else {
        println!("no services running (no state in {})", paths::display_path(&common.state_dir()));
        return Ok(());
    };
    println!("backend        {}", state.backend.name());
    let running = |alive: bool| if alive { "running" } else { "NOT RUNNING" };
    match &state.database {
        Some(services::Database::Embedded(db)) => println!(
            "database       pid {:<7} port {:<5} {}  {}",
            db.process.pid,
            db.port,
            running(process::group_is_ours_and_alive(&db.process)),
            crate::sys::secrets::redact(&db.url)
        ),
        Some(db) => println!("database       {}", db.shown_url()),
        None => {}
    }
    let alive = services::alive_services(&state);
    let now = state::unix_now();
    for s in &state.services {
        let health = if !alive.contains(&s.name) {
            "NOT RUNNING".to_string()
        } else {
            match readiness::check(s.addr, &s.health_path, &s.identity, &s.instance_id) {
                Ok(()) => "healthy".to_string(),
                Err(why) => format!("unhealthy: {why}"),
            }
        };
        let runs_as = match s.process {
            Some(p) => format!("pid {:<7}", p.pid),
            None => "container  ".to_string(),
        };
        println!(
            "{:<14} {runs_as} {:<21} up {:>6}s  {health}",
            s.name,
            s.addr,
            now.saturating_sub(s.started_unix)
        );
    }
    Ok(())
}

fn logs(
    common: &Common,
    backend: Option<Backend>,
    name: Option<&str>,
    follow: bool,
) -> anyhow::Result<()> {
    let state = session_state(common, backend)?;
    services::print_logs(&common.state_dir(), state.as_ref(), name, follow)
}
