//! The services of `config/services.toml` and the two ways to run them: the session API
//! every command uses.
//!
//! One manifest ([`manifest`]) becomes one plan ([`plan`]: which services, in which
//! waves, with which env); a backend carries the plan out and returns a [`Session`]: the
//! native backend runs processes on this machine, the Docker backend a Compose project.
//! Both are private to this folder and implement one contract ([`session`]); this file
//! picks the backend and is the only one that names them. A session offers the same
//! things whatever runs it: the URLs the tests need ([`State::exports`]), liveness,
//! logs, teardown, and a record in the state directory ([`state`]) that `services down`
//! from another shell reads. Readiness ([`readiness`]) and the database probe
//! ([`pg_probe`]) serve both backends; the supervisor of `services run` ([`run`]), the
//! benchmark ([`bench`]) and the CI pipeline (`crate::ci`) are written once, against
//! this API.

pub mod bench;
mod docker;
pub mod logs;
pub mod manifest;
mod native;
pub mod pg_probe;
pub mod plan;
pub mod readiness;
pub mod run;
pub mod session;
pub mod state;

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::sys::{fs, paths, process};
use crate::timings::Timings;
use manifest::Manifest;
use session::Lifecycle;
pub use session::{DockerOptions, Session, Teardown, UpOptions};
pub use state::{Backend, Database, State};

/// The backend that runs the sessions of `backend`.
fn lifecycle(backend: Backend) -> &'static dyn Lifecycle {
    match backend {
        Backend::Native => &native::Native,
        Backend::Docker => &docker::Docker,
    }
}

/// Stops what `state` records and removes the record. Idempotent.
pub fn teardown(state: &State, grace: Duration, save_logs: bool) -> Teardown {
    session::teardown(lifecycle(state.backend), state, grace, save_logs)
}

/// Whether anything `state` records still runs.
pub fn anything_alive(state: &State) -> bool {
    lifecycle(state.backend).anything_alive(state)
}

/// The services of `state` that are running.
pub fn alive_services(state: &State) -> Vec<String> {
    lifecycle(state.backend).alive_services(state)
}

/// The command that stops the session in `state_dir`, for messages.
pub fn down_command(state_dir: &Path) -> String {
    if state_dir == paths::xtask_dir() {
        "cargo xtask services down".to_string()
    } else {
        format!("cargo xtask services down --state-dir {}", state_dir.display())
    }
}

/// A database for test runs outside `services up`: `None` when `DATABASE_URL` is given
/// (and reachable), else a session holding a throwaway cluster, torn down when dropped.
/// It is recorded in `state_dir` like any session, so a run killed outright (SIGKILL)
/// leaves a record that `services down --state-dir` stops, not an unknown server. Its
/// `DATABASE_URL` is in `state.exports()`.
pub fn database_session(state_dir: &Path, database_name: &str) -> anyhow::Result<Option<Session>> {
    if pg_probe::given_url()?.is_some() {
        return Ok(None);
    }
    let lock = state::StateLock::acquire(state_dir)?;
    ensure_no_session(state_dir)?;
    native::database_session(state_dir, database_name, lock).map(Some)
}

/// Refuses to start over a live session; clears a stale one (its processes are gone).
///
/// Where the native backend keeps the database files of `state_dir`'s sessions (in
/// memory where there is room): what a check that nothing is left looks at.
pub fn database_files_of(state_dir: &Path) -> PathBuf {
    native::database_files_of(state_dir)
}

/// A session whose owner (a pipeline run) died is stopped, with one line saying so: its
/// processes already died with their owner, and whatever is left (containers, a data
/// directory) goes. A detached session (`services up`), or one whose owner still runs,
/// is never touched. Processes of this state directory that no record tracks (its file
/// was deleted) make the run stop with the command that removes them.
pub fn ensure_no_session(state_dir: &Path) -> anyhow::Result<()> {
    if let Some(old) = State::load(state_dir)? {
        let owner_gone = old.owner.is_some_and(|owner| !owner.is_ours_and_alive());
        if owner_gone {
            eprintln!(
                "xtask: the run that owned the {} session in {} (pid {}) is gone; stopping what it left",
                old.backend.name(),
                paths::display_path(state_dir),
                old.owner.map(|o| o.pid).unwrap_or_default()
            );
        } else if anything_alive(&old) {
            match old.owner {
                Some(owner) => crate::user_error!(
                    "another run (pid {}) is using the services in {}: wait for it, or use another --state-dir",
                    owner.pid,
                    paths::display_path(state_dir)
                ),
                None => crate::user_error!(
                    "services from an earlier `up` ({}) are still running (state in {}): run `{}` first",
                    old.backend.name(),
                    paths::display_path(&state::state_file(state_dir)),
                    down_command(state_dir)
                ),
            }
        }
        teardown(&old, Duration::from_secs(1), false);
    }
    let untracked = process::marked(state::STATE_DIR_MARKER, state_dir);
    if !untracked.is_empty() {
        let pids: Vec<String> = untracked.iter().map(|p| p.pid.to_string()).collect();
        crate::user_error!(
            "processes started for {} run without a state file to track them (pids {}): run `{}` first (it finds them by their environment)",
            paths::display_path(state_dir),
            pids.join(", "),
            down_command(state_dir)
        );
    }
    Ok(())
}

/// `down`: tears down the session recorded in `state_dir`, if any; without a record,
/// the processes marked as started for `state_dir` (by their environment).
pub fn down(state_dir: &Path, grace: Duration) -> anyhow::Result<Option<Teardown>> {
    if let Some(state) = State::load(state_dir)? {
        return Ok(Some(teardown(&state, grace, false)));
    }
    let untracked = process::marked(state::STATE_DIR_MARKER, state_dir);
    if untracked.is_empty() {
        return Ok(None);
    }
    let started = std::time::Instant::now();
    let groups: Vec<(String, process::Identity)> =
        untracked.iter().map(|id| (format!("untracked pid {}", id.pid), *id)).collect();
    let named: Vec<(&str, process::Identity)> =
        groups.iter().map(|(name, id)| (name.as_str(), *id)).collect();
    let killed = process::terminate_groups(&named, grace);
    native::remove_leftovers(state_dir);
    Ok(Some(Teardown {
        took: started.elapsed(),
        killed: killed.into_iter().map(str::to_string).collect(),
        foreign: vec![format!("stopped {} process group(s) no state file tracked", groups.len())],
    }))
}

/// Everything checked before anything starts, per backend.
#[allow(clippy::large_enum_variant, reason = "one value per run, moved once")]
pub enum Prepared {
    Native(native::Prepared),
    Docker(docker::Prepared),
}

/// Checks the manifest against the machine and plans the session: nothing is started,
/// so every mistake found here leaves nothing behind.
pub fn prepare(
    manifest: Manifest,
    options: &UpOptions,
    timings: &mut Timings,
) -> anyhow::Result<Prepared> {
    ensure_no_session(&options.state_dir)?;
    timings.time("config", || -> anyhow::Result<()> {
        for written in crate::config::refresh_generated()? {
            eprintln!("xtask: regenerated {}", paths::display_path(&written));
        }
        Ok(())
    })?;
    match options.backend {
        Backend::Native => Ok(Prepared::Native(native::prepare(manifest, options)?)),
        Backend::Docker => Ok(Prepared::Docker(docker::prepare(manifest, options, timings)?)),
    }
}

/// Starts what `prepared` describes. Phases are added to `timings`.
pub fn start(
    prepared: Prepared,
    options: &UpOptions,
    timings: &mut Timings,
) -> anyhow::Result<Session> {
    match prepared {
        Prepared::Native(prepared) => native::start(prepared, options, timings),
        Prepared::Docker(prepared) => docker::start(prepared, options, timings),
    }
}

/// Loads the manifest of `options`, prepares and starts it.
pub fn up(options: &UpOptions, timings: &mut Timings) -> anyhow::Result<Session> {
    let manifest = manifest::load(&options.manifest)?;
    start(prepare(manifest, options, timings)?, options, timings)
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
    text.push_str(&crate::github::env_file(&exports));
    // It holds the database password: the owner's alone.
    fs::write_private(&state::env_file(&state.dir), text)?;
    if for_later_steps {
        // Later steps get the real URL; GitHub masks its password in every log.
        for (_, value) in &exports {
            if let Some(password) = crate::sys::secrets::password_of(value) {
                crate::github::mask(password);
            }
        }
        crate::github::export_env(&exports)?;
    }
    Ok(exports)
}

// The Docker backend's engine, generated files and base image, for the commands that
// check or prepare them (`docker generate | bootstrap`, the pre-flight checks of `test`
// and the pipeline, `services down | logs`).

/// The Docker engine's version, or one line (exit 2) saying there is none.
pub fn ensure_docker_engine() -> anyhow::Result<String> {
    docker::ensure_engine()
}

/// The Compose file among the Docker backend's generated files.
pub const DOCKER_COMPOSE_FILE: &str = docker::generate::COMPOSE_FILE;

/// Brings the Docker backend's generated files in `dir` up to date with `manifest`;
/// returns the ones it rewrote (none when `check`, which only compares and reports).
pub fn refresh_docker_files(
    manifest: &Manifest,
    dir: &Path,
    check: bool,
) -> anyhow::Result<Vec<PathBuf>> {
    docker::refresh_files(manifest, dir, check)
}

/// Builds the local base image of the service images for this machine's OS release
/// (unless it exists, or with `force`); its tag.
pub fn bootstrap_base_image(force: bool) -> anyhow::Result<String> {
    docker::ensure_engine()?;
    let os = docker::bootstrap::os_release()?;
    docker::bootstrap::ensure(&os, force)
}

/// The Compose project of the Docker sessions of `state_dir`.
pub fn docker_project(state_dir: &Path) -> String {
    docker::project_name(state_dir)
}

/// `services down --backend docker` without a state file: removes every Compose project
/// whose containers carry this state directory's label; how many.
pub fn remove_docker_leftovers(state_dir: &Path) -> anyhow::Result<usize> {
    docker::down_leftovers(state_dir)
}

/// `services logs`: the log of `name` (every log without a name) of the session in
/// `state_dir`, as the backend keeps them; with `follow`, as they grow.
pub fn print_logs(
    state_dir: &Path,
    state: Option<&State>,
    name: Option<&str>,
    follow: bool,
) -> anyhow::Result<()> {
    match state {
        Some(state) if state.backend == Backend::Docker => docker::print_logs(state, name, follow),
        _ => logs::print(&state::log_dir(state_dir), name, follow),
    }
}
