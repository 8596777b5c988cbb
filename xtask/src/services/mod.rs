//! The services of `config/services.toml` and the two ways to run them.
//!
//! One manifest ([`manifest`]) becomes one plan ([`plan`]: which services, in which
//! waves, with which env); a backend carries the plan out and returns a [`Session`]:
//! [`native`] runs processes on this machine, [`docker`] runs a Compose project. A
//! session offers the same things whatever runs it: the URLs the tests need
//! ([`State::exports`]), liveness, logs, teardown, and a record in the state directory
//! ([`state`]) that `services down` from another shell reads. Readiness ([`readiness`])
//! and the CI pipeline ([`pipeline`]) are written once, against this API.

pub mod docker;
pub mod logs;
pub mod manifest;
pub mod native;
pub mod pipeline;
pub mod plan;
pub mod readiness;
pub mod state;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::sys::error::UserError;
use crate::sys::{fs, paths, process};
use crate::timings::Timings;
use manifest::Manifest;
use plan::Plan;
pub use state::{Database, State};

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

/// What to start, how, and where to keep its record.
#[derive(Debug, Clone)]
pub struct UpOptions {
    pub manifest: PathBuf,
    pub state_dir: PathBuf,
    /// Services asked for by name; empty means all.
    pub only: Vec<String>,
    /// Services left out, with their tests.
    pub without: Vec<String>,
    pub release: bool,
    pub fixed_ports: bool,
    /// Overall startup timeout, before the CI multiplier.
    pub timeout: Duration,
    pub backend: Backend,
    pub docker: docker::Options,
    /// The session outlives this process on purpose (`services up`). Otherwise it is
    /// owned: its processes die with this one, and a later run cleans up after a killed
    /// owner.
    pub detached: bool,
}

/// A started session. Dropping it while armed tears everything down, so an early
/// return, an error or a panic never leaves processes or containers behind.
pub struct Session {
    pub state: State,
    armed: bool,
    /// The state directory's lock, when the session holds it itself (the test database).
    lock: Option<state::StateLock>,
}

impl Session {
    /// A session with nothing started yet; its record is written at once, so a `down`
    /// from another shell knows it from the start.
    pub(crate) fn begin(state: State) -> anyhow::Result<Session> {
        let session = Session { state, armed: true, lock: None };
        session.state.save()?;
        Ok(session)
    }

    /// The session holds `lock` until it is torn down.
    pub(crate) fn holding(mut self, lock: state::StateLock) -> Session {
        self.lock = Some(lock);
        self
    }

    /// Keeps the services running after this process exits (`services up`).
    pub fn detach(mut self) -> State {
        self.armed = false;
        self.state.clone()
    }

    /// Stops everything. With `save_logs`, logs that would go with the session (a
    /// container's) are first saved to each service's log file.
    pub fn teardown(mut self, grace: Duration, save_logs: bool) -> Teardown {
        self.armed = false;
        let report = teardown(&self.state, grace, save_logs);
        self.lock.take();
        report
    }

    /// The services that are no longer running.
    pub fn dead_services(&self) -> Vec<String> {
        match self.state.backend {
            Backend::Native => native::dead_services(&self.state),
            Backend::Docker => docker::dead_services(&self.state),
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if self.armed {
            // Whatever failed, keep what the services said about it.
            teardown(&self.state, crate::sys::interrupts::grace(Duration::from_secs(5)), true);
        }
    }
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

/// Stops what `state` records and removes the record. Idempotent.
pub fn teardown(state: &State, grace: Duration, save_logs: bool) -> Teardown {
    let started = std::time::Instant::now();
    let mut report = match state.backend {
        Backend::Native => native::teardown(state, grace),
        Backend::Docker => docker::teardown(state, grace, save_logs),
    };
    let _ = std::fs::remove_file(state::state_file(&state.dir));
    let _ = std::fs::remove_file(state::env_file(&state.dir));
    report.took = started.elapsed();
    report
}

/// Whether anything `state` records still runs.
pub fn anything_alive(state: &State) -> bool {
    match state.backend {
        Backend::Native => native::anything_alive(state),
        Backend::Docker => docker::anything_alive(state),
    }
}

/// The services of `state` that are running.
pub fn alive_services(state: &State) -> Vec<String> {
    match state.backend {
        Backend::Native => state
            .services
            .iter()
            .filter(|s| native::service_alive(s))
            .map(|s| s.name.clone())
            .collect(),
        Backend::Docker => docker::alive_services(state),
    }
}

/// The command that stops the session in `state_dir`, for messages.
pub fn down_command(state_dir: &Path) -> String {
    if state_dir == paths::xtask_dir() {
        "cargo xtask services down".to_string()
    } else {
        format!("cargo xtask services down --state-dir {}", state_dir.display())
    }
}

/// Refuses to start over a live session; clears a stale one (its processes are gone).
///
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
    native::postgres::remove_leftovers(state_dir);
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

/// The plan of `manifest` for `options`, with the skipped optional services announced.
pub fn plan_with(
    manifest: &Manifest,
    options: &UpOptions,
    world: &dyn plan::World,
) -> anyhow::Result<Plan> {
    let root = paths::root();
    let target = paths::target_dir();
    let plan_options = plan::Options {
        only: &options.only,
        without: &options.without,
        release: options.release,
        fixed_ports: options.fixed_ports,
        root: &root,
        target_dir: &target,
    };
    let plan = plan::plan(manifest, &plan_options, world).map_err(UserError)?;
    for skipped in &plan.skipped {
        if options.without.contains(&skipped.name) {
            eprintln!("xtask: leaving out `{}` and its tests (--without)", skipped.name);
        } else {
            eprintln!(
                "warning: skipping optional service `{}`: it {}; its tests are filtered out",
                skipped.name, skipped.reason
            );
        }
    }
    Ok(plan)
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
