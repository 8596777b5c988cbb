//! `cargo xtask services up | down | status | logs | bench`: the services of
//! `config/services.toml` run natively, for tests run by hand or by CI.

use std::io::{Read, Seek, SeekFrom, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::native::{self, Database, State, UpOptions};
use crate::processes;
use crate::project;
use crate::readiness;
use crate::timings::Timings;
use crate::{github, manifest};

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
        absolute(self.state_dir.clone().unwrap_or_else(project::xtask_dir))
    }
    pub fn manifest(&self) -> PathBuf {
        absolute(self.manifest.clone().unwrap_or_else(manifest::default_path))
    }
}

fn absolute(path: PathBuf) -> PathBuf {
    if path.is_absolute() {
        path
    } else {
        std::env::current_dir().map(|d| d.join(&path)).unwrap_or(path)
    }
}

#[derive(clap::Args, Clone)]
pub struct Start {
    /// Start only these services (and what they depend on)
    #[arg(long, value_name = "NAME", num_args = 1..)]
    pub only: Vec<String>,
    /// Use binaries of the release profile
    #[arg(long)]
    pub release: bool,
    /// Use each service's `fixed_port` from the manifest instead of free ports
    #[arg(long)]
    pub fixed_ports: bool,
    /// Seconds to wait for all services to be ready (times TASKER_TEST_TIMEOUT_MULTIPLIER, or 3 when CI is set)
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub timeout: u64,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Start the database, run migrations and start the services; print their URLs
    #[command(after_help = "\
Without DATABASE_URL a throwaway PostgreSQL is started (and removed by `down`).
Writes <state-dir>/services.env (and appends to $GITHUB_ENV when set), so tests can run
by hand: `set -a; . target/xtask/services.env; cargo nextest run ...`.")]
    Up {
        #[command(flatten)]
        start: Start,
        #[command(flatten)]
        common: Common,
    },
    /// Stop what `up` started (verified by pid and start time) and remove the throwaway database
    Down {
        /// Seconds between SIGTERM and SIGKILL
        #[arg(long, value_name = "SECS", default_value_t = 5.0)]
        grace: f64,
        #[command(flatten)]
        common: Common,
    },
    /// Show each service's pid, port, health and uptime
    Status {
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
        #[command(flatten)]
        common: Common,
    },
    /// Measure up -> ready and teardown over several runs (prebuilt binaries)
    Bench {
        /// How many up/down cycles to measure
        #[arg(long, default_value_t = 10)]
        runs: usize,
        #[command(flatten)]
        start: Start,
        #[command(flatten)]
        common: Common,
    },
}

pub fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        Command::Up { start, common } => up(&start, &common),
        Command::Down { grace, common } => down(&common, Duration::from_secs_f64(grace.max(0.0))),
        Command::Status { common } => status(&common),
        Command::Logs { name, follow, common } => logs(&common, name.as_deref(), follow),
        Command::Bench { runs, start, common } => bench(runs, &start, &common),
    }
}

pub fn up_options(start: &Start, common: &Common) -> UpOptions {
    UpOptions {
        manifest: common.manifest(),
        state_dir: common.state_dir(),
        only: start.only.clone(),
        release: start.release,
        fixed_ports: start.fixed_ports,
        timeout: Duration::from_secs(start.timeout),
    }
}

fn up(start: &Start, common: &Common) -> anyhow::Result<()> {
    processes::catch_interrupts();
    let options = up_options(start, common);
    let mut timings = Timings::default();
    let began = Instant::now();
    let session = native::up(&options, &mut timings)?;
    // Before detaching: if the exports cannot be written, the session still tears down.
    let exports = write_exports(&session.state, true)?;
    let state = session.detach();
    eprintln!(
        "xtask: {} service(s) ready in {:.2}s (database {}); stop them with `{}`",
        state.services.len(),
        began.elapsed().as_secs_f64(),
        state.database.as_ref().map(Database::shown_url).unwrap_or_default(),
        native::down_command(&state.dir)
    );
    print!("{}", github::env_file(&exports));
    Ok(())
}

/// Writes `services.env` and, when `for_later_steps`, `$GITHUB_ENV` (on GitHub Actions).
pub fn write_exports(
    state: &State,
    for_later_steps: bool,
) -> anyhow::Result<Vec<(String, String)>> {
    let exports = state.exports();
    let mut text = String::from(
        "# Written by `cargo xtask services up`: the running services, for tests run by hand.\n",
    );
    if let Some(Database::External { redacted_url }) = &state.database {
        text.push_str(&format!("# DATABASE_URL comes from your environment ({redacted_url}).\n"));
    }
    text.push_str(&github::env_file(&exports));
    project::write_atomic(&native::env_file(&state.dir), text)?;
    if for_later_steps {
        github::export_env(&exports)?;
    }
    Ok(exports)
}

fn down(common: &Common, grace: Duration) -> anyhow::Result<()> {
    match native::down(&common.state_dir(), grace)? {
        None => eprintln!(
            "xtask: nothing to stop (no state in {})",
            project::display_path(&common.state_dir())
        ),
        Some(report) => {
            for foreign in &report.foreign {
                eprintln!("warning: {foreign}");
            }
            if !report.killed.is_empty() {
                eprintln!("warning: needed SIGKILL after {grace:?}: {}", report.killed.join(", "));
            }
            eprintln!("xtask: stopped everything in {:.3}s", report.took.as_secs_f64());
        }
    }
    Ok(())
}

fn status(common: &Common) -> anyhow::Result<()> {
    let Some(state) = State::load(&common.state_dir())? else {
        println!(
            "no services running (no state in {})",
            project::display_path(&common.state_dir())
        );
        return Ok(());
    };
    if let Some(db) = &state.database {
        let line = match db {
            Database::Embedded(e) => {
                let alive = if processes::group_is_ours_and_alive(&e.process) {
                    "running"
                } else {
                    "NOT RUNNING"
                };
                format!(
                    "database       pid {:<7} port {:<5} {alive}  {}",
                    e.process.pid, e.port, e.url
                )
            }
            Database::External { redacted_url } => {
                format!("database       external  {redacted_url}")
            }
        };
        println!("{line}");
    }
    let now = processes::unix_now();
    for s in &state.services {
        let health = if !processes::group_is_ours_and_alive(&s.process) {
            "NOT RUNNING".to_string()
        } else {
            match readiness::check(
                SocketAddr::from(([127, 0, 0, 1], s.port)),
                &s.health_path,
                &s.identity,
                &s.instance_id,
            ) {
                Ok(()) => "healthy".to_string(),
                Err(why) => format!("unhealthy: {why}"),
            }
        };
        println!(
            "{:<14} pid {:<7} port {:<5} up {:>6}s  {health}",
            s.name,
            s.process.pid,
            s.port,
            now.saturating_sub(s.started_unix)
        );
    }
    Ok(())
}

fn logs(common: &Common, name: Option<&str>, follow: bool) -> anyhow::Result<()> {
    match print_logs(common, name, follow) {
        // `logs | head` closing the pipe is how a reader says "enough".
        Err(err)
            if err
                .downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            Ok(())
        }
        other => other,
    }
}

fn print_logs(common: &Common, name: Option<&str>, follow: bool) -> anyhow::Result<()> {
    let dir = native::log_dir(&common.state_dir());
    let mut files: Vec<PathBuf> = match name {
        Some(name) => {
            let path = dir.join(format!("{name}.log"));
            if !path.exists() {
                let known: Vec<String> = std::fs::read_dir(&dir)
                    .into_iter()
                    .flatten()
                    .filter_map(|e| {
                        e.ok()?.file_name().to_str()?.strip_suffix(".log").map(str::to_string)
                    })
                    .collect();
                crate::user_error!(
                    "no log for `{name}` in {} (have: {})",
                    project::display_path(&dir),
                    known.join(", ")
                );
            }
            vec![path]
        }
        None => std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .filter_map(|e| Some(e.ok()?.path()))
            .collect(),
    };
    files.sort();
    let prefix = files.len() > 1;
    let mut offsets = vec![0u64; files.len()];
    let mut out = std::io::stdout().lock();
    loop {
        for (path, offset) in files.iter().zip(offsets.iter_mut()) {
            let Ok(mut file) = std::fs::File::open(path) else { continue };
            let len = file.metadata()?.len();
            if len < *offset {
                *offset = 0; // truncated by a new `up`
            }
            file.seek(SeekFrom::Start(*offset))?;
            let mut bytes = Vec::new();
            file.read_to_end(&mut bytes)?;
            // While following, only whole lines, so a prefix never lands mid-line; a last
            // line without its newline is printed once the rest of it arrives.
            let whole = match follow {
                true => bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1),
                false => bytes.len(),
            };
            // A service may log bytes that are not UTF-8; show them rather than stop.
            let text = String::from_utf8_lossy(&bytes[..whole]);
            let name = path.file_stem().unwrap_or_default().to_string_lossy();
            for line in text.lines() {
                if prefix {
                    writeln!(out, "{name:>14} | {line}")?;
                } else {
                    writeln!(out, "{line}")?;
                }
            }
            *offset += whole as u64;
        }
        out.flush()?;
        if !follow {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// Up, ready, down, N times; prints the medians. Binaries are not built here, so the
/// numbers are the startup alone.
fn bench(runs: usize, start: &Start, common: &Common) -> anyhow::Result<()> {
    processes::catch_interrupts();
    let options = up_options(start, common);
    let mut rows: Vec<[f64; 6]> = Vec::new();
    for run in 1..=runs.max(1) {
        let mut timings = Timings::default();
        let began = Instant::now();
        let session = native::up(&options, &mut timings)?;
        let ready = began.elapsed();
        let report = session.teardown(Duration::from_secs(5));
        let row = [
            ready.as_secs_f64(),
            timings.get("database").as_secs_f64(),
            timings.get("migrate").as_secs_f64(),
            (timings.get("start") + timings.get("ready")).as_secs_f64(),
            (ready
                - timings.get("database")
                - timings.get("migrate")
                - timings.get("start")
                - timings.get("ready"))
            .as_secs_f64(),
            report.took.as_secs_f64(),
        ];
        eprintln!(
            "run {run:>3}: ready {:.3}s (database {:.3}, migrate {:.3}, services {:.3}, other {:.3}), teardown {:.3}s",
            row[0], row[1], row[2], row[3], row[4], row[5]
        );
        rows.push(row);
        if processes::interrupted().is_some() {
            break;
        }
    }
    let column = |i: usize| median(&mut rows.iter().map(|r| r[i]).collect::<Vec<_>>());
    println!("median over {} runs (seconds):", rows.len());
    println!("  up -> all ready   {:.3}", column(0));
    println!("    database        {:.3}", column(1));
    println!("    migrate         {:.3}", column(2));
    println!("    services        {:.3}", column(3));
    println!("    other (checks)  {:.3}", column(4));
    println!("  teardown          {:.3}", column(5));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}
