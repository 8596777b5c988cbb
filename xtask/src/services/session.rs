//! The contract between the session API and the two backends. A backend takes
//! [`UpOptions`] and returns a [`Session`]; from then on it answers what the session
//! asks through [`Lifecycle`] (which services run, is anything left, stop it all). The
//! facade (`services/mod.rs`) picks the backend; a backend never calls the facade.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::manifest::Manifest;
use super::plan::{self, Plan};
use super::state::{self, Backend, State, StateLock};
use crate::sys::error::UserError;
use crate::sys::{interrupts, paths};

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
    pub docker: DockerOptions,
    /// The session outlives this process on purpose (`services up`). Otherwise it is
    /// owned: its processes die with this one, and a later run cleans up after a killed
    /// owner.
    pub detached: bool,
}

/// The startup timeout when the command line gives none, in seconds.
pub const DEFAULT_TIMEOUT_SECS: u64 = 60;

impl UpOptions {
    /// Everything, with the defaults of the command line (`ci-native` as `cargo xtask
    /// test` runs it): the committed manifest, state in `target/xtask`, owned.
    pub fn defaults(backend: Backend) -> UpOptions {
        UpOptions {
            manifest: super::manifest::default_path(),
            state_dir: paths::xtask_dir(),
            only: Vec::new(),
            without: Vec::new(),
            release: false,
            fixed_ports: false,
            timeout: Duration::from_secs(DEFAULT_TIMEOUT_SECS),
            backend,
            docker: DockerOptions::default(),
            detached: false,
        }
    }

    /// The plan of `manifest` for these options, with the skipped optional services
    /// announced. `world` says what the backend's machine has.
    pub fn plan(&self, manifest: &Manifest, world: &dyn plan::World) -> anyhow::Result<Plan> {
        let root = paths::root();
        let target = paths::target_dir();
        let plan_options = plan::Options {
            only: &self.only,
            without: &self.without,
            release: self.release,
            fixed_ports: self.fixed_ports,
            root: &root,
            target_dir: &target,
        };
        let plan = plan::plan(manifest, &plan_options, world).map_err(UserError)?;
        for skipped in &plan.skipped {
            if self.without.contains(&skipped.name) {
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
}

/// The Docker backend's flags.
#[derive(Debug, Clone, Default)]
pub struct DockerOptions {
    /// Never pull; use the local base image.
    pub offline: bool,
    /// The base image of the service images, instead of the host's release.
    pub base_image: Option<String>,
    /// Rebuild the service images without the build cache (bench: a cold cache).
    pub rebuild: bool,
}

/// What a backend does for a session it started, or one a state file records.
pub trait Lifecycle: Sync {
    /// Stops what `state` records (not the record itself). With `save_logs`, logs that
    /// would go with the session (a container's) are first saved to each service's log
    /// file.
    fn stop(&self, state: &State, grace: Duration, save_logs: bool) -> Teardown;
    /// The services of `state` that are running.
    fn alive_services(&self, state: &State) -> Vec<String>;
    /// Whether anything `state` records still runs, the database included.
    fn anything_alive(&self, state: &State) -> bool;
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

/// Stops what `state` records with its backend and removes the record. Idempotent.
pub fn teardown(
    backend: &dyn Lifecycle,
    state: &State,
    grace: Duration,
    save_logs: bool,
) -> Teardown {
    let started = Instant::now();
    let mut report = backend.stop(state, grace, save_logs);
    let _ = std::fs::remove_file(state::state_file(&state.dir));
    let _ = std::fs::remove_file(state::env_file(&state.dir));
    report.took = started.elapsed();
    report
}

/// A started session. Dropping it while armed tears everything down, so an early
/// return, an error or a panic never leaves processes or containers behind.
pub struct Session {
    pub state: State,
    backend: &'static dyn Lifecycle,
    armed: bool,
    /// The state directory's lock, when the session holds it itself (the test database).
    lock: Option<StateLock>,
}

impl Session {
    /// A session of `backend` with nothing started yet; its record is written at once, so
    /// a `down` from another shell knows it from the start.
    pub fn begin(state: State, backend: &'static dyn Lifecycle) -> anyhow::Result<Session> {
        let session = Session { state, backend, armed: true, lock: None };
        session.state.save()?;
        Ok(session)
    }

    /// The session holds `lock` until it is torn down.
    pub fn holding(mut self, lock: StateLock) -> Session {
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
        let report = teardown(self.backend, &self.state, grace, save_logs);
        self.lock.take();
        report
    }

    /// The services that are no longer running.
    pub fn dead_services(&self) -> Vec<String> {
        let alive = self.backend.alive_services(&self.state);
        let dead = self.state.services.iter().filter(|s| !alive.contains(&s.name));
        dead.map(|s| s.name.clone()).collect()
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if self.armed {
            // Whatever failed, keep what the services said about it.
            let grace = interrupts::grace(Duration::from_secs(5));
            teardown(self.backend, &self.state, grace, true);
        }
    }
}
