//! `cargo xtask test`: the whole test suite, as CI runs it.
//!
//! The suite is a list of steps (see [`plan`]), each a cargo invocation with the same
//! `DATABASE_URL`, then the end-to-end tests (`ci-native`) and the Docker backend's tests
//! ([`docker_step`], where an engine is reachable). Every step runs even when an earlier
//! one failed, so one run shows every failure; the task fails when any step did. Services
//! that tests need (a database, the running system) are started here, around the steps
//! that use them.

use anyhow::Context as _;

use crate::project::{self, Exit};

#[derive(clap::Args)]
#[command(after_help = "\
Runs the workspace's unit and integration tests (with cargo-nextest when it is installed,
else `cargo test`), then the doc tests, with a throwaway PostgreSQL as DATABASE_URL unless
DATABASE_URL is set; then the end-to-end tests (`cargo xtask ci-native`); then the Docker
backend's own tests where a Docker engine is reachable (skipped, and said so, elsewhere).

Examples:
  cargo xtask test                      the whole suite
  cargo xtask test -- merge             only tests whose name contains `merge`
  cargo xtask test -- --no-fail-fast")]
pub struct Args {
    /// Only the unit, integration and doc tests (CI runs the end-to-end tests in jobs of
    /// their own)
    #[arg(long)]
    skip_end_to_end: bool,
    /// Arguments after `--` go to every cargo test run (test name filters, cargo flags)
    #[arg(last = true, value_name = "CARGO_ARGS")]
    cargo_args: Vec<String>,
}

/// The database created in the throwaway cluster; each database test creates its own
/// databases from the server URL.
const DATABASE_NAME: &str = "tasker_test";

/// What runs the unit and integration tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runner {
    Nextest,
    CargoTest,
}

/// One cargo invocation of the suite.
#[derive(Debug, PartialEq, Eq)]
pub struct Step {
    pub name: &'static str,
    pub cargo_args: Vec<String>,
}

/// The suite's steps, in order. Pure, so the shape of the suite is unit-tested.
pub fn plan(runner: Runner, extra: &[String]) -> Vec<Step> {
    let with_extra = |args: &[&str]| -> Vec<String> {
        args.iter().map(|a| a.to_string()).chain(extra.iter().cloned()).collect()
    };
    let tests = match runner {
        Runner::Nextest => with_extra(&["nextest", "run", "--workspace"]),
        // `--tests` selects what nextest runs (libs, bins, integration tests) and leaves
        // the doc tests to their own step, so they do not run twice.
        Runner::CargoTest => with_extra(&["test", "--workspace", "--tests"]),
    };
    vec![
        Step { name: "unit and integration tests", cargo_args: tests },
        Step { name: "doc tests", cargo_args: with_extra(&["test", "--workspace", "--doc"]) },
    ]
}

/// The Docker backend's tests: ignored by the steps above (they need an engine), run
/// here on their own where one is reachable.
pub fn docker_step(runner: Runner, extra: &[String]) -> Step {
    let mut cargo_args: Vec<String> = match runner {
        Runner::Nextest => {
            ["nextest", "run", "-p", "xtask", "--test", "docker_backend", "--run-ignored", "only"]
                .map(String::from)
                .to_vec()
        }
        Runner::CargoTest => {
            ["test", "-p", "xtask", "--test", "docker_backend"].map(String::from).to_vec()
        }
    };
    cargo_args.extend(extra.iter().cloned());
    if runner == Runner::CargoTest {
        cargo_args.extend(["--".to_string(), "--ignored".to_string()]);
    }
    Step { name: "Docker backend tests", cargo_args }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let runner = if project::nextest_installed() { Runner::Nextest } else { Runner::CargoTest };
    if runner == Runner::CargoTest {
        eprintln!("note: cargo-nextest is not installed; running the tests with `cargo test`");
    }
    let steps = plan(runner, &args.cargo_args);
    let mut failed = Vec::new();
    let mut skipped: Vec<String> = Vec::new();
    let mut timings = crate::timings::Timings::default();
    let started = std::time::SystemTime::now();
    let began = std::time::Instant::now();
    crate::interrupts::catch_interrupts();
    // Database tests read DATABASE_URL: a throwaway server unless one is given. It stops
    // (and its data goes) when `database` is dropped, on every path out of this block.
    let database = crate::services::native::database_session(
        &project::xtask_dir().join("test-database"),
        DATABASE_NAME,
    )?;
    let exports = database.as_ref().map(|db| db.state.exports()).unwrap_or_default();
    for step in &steps {
        if !timings.time(step.name, || run_step(step, &exports))? {
            failed.push(step.name);
        }
    }
    drop(database);
    if args.skip_end_to_end {
        skipped.push("end-to-end tests (--skip-end-to-end)".to_string());
        skipped.push("Docker backend tests (--skip-end-to-end)".to_string());
    } else {
        // Then the end-to-end tests against the real services.
        eprintln!("==> end-to-end tests: cargo xtask ci-native");
        match timings.time("end-to-end tests", crate::cli::ci::native_default) {
            Ok(()) => {}
            Err(err) if crate::interrupts::interrupted().is_some() => return Err(err),
            Err(err) => {
                if err.downcast_ref::<Exit>().is_none() {
                    eprintln!("error: {err:#}");
                }
                failed.push("end-to-end tests");
            }
        }
        let docker = docker_step(runner, &args.cargo_args);
        match crate::services::docker::ensure_engine() {
            Ok(_) => {
                if !timings.time(docker.name, || run_step(&docker, &[]))? {
                    failed.push(docker.name);
                }
            }
            Err(why) => {
                eprintln!("==> {}: skipped: {why}", docker.name);
                skipped.push(format!("{} (no Docker engine)", docker.name));
            }
        }
    }
    let record = crate::history::Run {
        mode: "test",
        started_unix: started
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0),
        wall_seconds: began.elapsed().as_secs_f64(),
        phases: &timings.phases,
        outcome: if failed.is_empty() { "passed" } else { "failed" },
        cases: &[],
        startup_failure: None,
        commit: crate::history::commit(),
    }
    .record();
    let history = crate::history::default_path();
    if let Err(err) = crate::history::append(&history, &record) {
        eprintln!(
            "warning: could not add this run to {}: {err:#}",
            project::display_path(&history)
        );
    }
    let ran = steps.len() + 2 - skipped.len();
    let skipped = match skipped.is_empty() {
        true => String::new(),
        false => format!("; skipped: {}", skipped.join(", ")),
    };
    if failed.is_empty() {
        eprintln!("==> all {ran} test steps passed{skipped}");
        Ok(())
    } else {
        eprintln!("error: failing test steps: {}{skipped}", failed.join(", "));
        Err(Exit(1).into())
    }
}

/// Runs one cargo step with `env`; returns whether it passed.
fn run_step(step: &Step, env: &[(String, String)]) -> anyhow::Result<bool> {
    eprintln!("==> {}: cargo {}", step.name, step.cargo_args.join(" "));
    let mut command = project::cargo();
    command
        .args(&step.cargo_args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(std::process::Stdio::null());
    crate::interrupts::own(&mut command, libc::SIGTERM);
    let mut child =
        command.spawn().with_context(|| format!("running cargo for the {}", step.name))?;
    let status = crate::interrupts::wait_child(&mut child, std::time::Duration::from_secs(10))?;
    crate::interrupts::check_interrupted()?;
    Ok(status.success())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args_of(steps: &[Step]) -> Vec<String> {
        steps.iter().map(|s| s.cargo_args.join(" ")).collect()
    }

    #[test]
    fn nextest_runs_the_workspace_then_doc_tests() {
        let steps = plan(Runner::Nextest, &[]);
        assert_eq!(args_of(&steps), ["nextest run --workspace", "test --workspace --doc"]);
    }

    #[test]
    fn without_nextest_cargo_test_skips_doc_tests_in_the_first_step() {
        let steps = plan(Runner::CargoTest, &[]);
        assert_eq!(args_of(&steps), ["test --workspace --tests", "test --workspace --doc"]);
    }

    #[test]
    fn the_docker_tests_are_the_ignored_ones_of_their_binary() {
        assert_eq!(
            docker_step(Runner::Nextest, &[]).cargo_args.join(" "),
            "nextest run -p xtask --test docker_backend --run-ignored only"
        );
        assert_eq!(
            docker_step(Runner::CargoTest, &["crash".to_owned()]).cargo_args.join(" "),
            "test -p xtask --test docker_backend crash -- --ignored"
        );
    }

    #[test]
    fn extra_arguments_reach_every_step() {
        let steps = plan(Runner::Nextest, &["merge".to_owned()]);
        assert!(steps.iter().all(|s| s.cargo_args.last().map(String::as_str) == Some("merge")));
    }
}
