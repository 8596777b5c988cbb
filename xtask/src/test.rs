//! `cargo xtask test`: the whole test suite, as CI runs it.
//!
//! The suite is a list of steps (see [`plan`]), each a cargo invocation; all of them get
//! the same `DATABASE_URL`. Every step runs even when an earlier one failed, so one run shows every
//! failure; the task fails when any step did. Services that tests need (a database, the
//! running system) are started here, around the steps that use them.

use anyhow::Context as _;

use crate::project::{self, Exit};

#[derive(clap::Args)]
#[command(after_help = "\
Runs the workspace's unit and integration tests (with cargo-nextest when it is installed,
else `cargo test`), then the doc tests, with a throwaway PostgreSQL as DATABASE_URL unless
DATABASE_URL is set; then the end-to-end tests (`cargo xtask ci-native`).

Examples:
  cargo xtask test                      the whole suite
  cargo xtask test -- merge             only tests whose name contains `merge`
  cargo xtask test -- --no-fail-fast")]
pub struct Args {
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

pub fn run(args: Args) -> anyhow::Result<()> {
    let runner = if project::nextest_installed() { Runner::Nextest } else { Runner::CargoTest };
    if runner == Runner::CargoTest {
        eprintln!("note: cargo-nextest is not installed; running the tests with `cargo test`");
    }
    let steps = plan(runner, &args.cargo_args);
    let mut failed = Vec::new();
    crate::interrupts::catch_interrupts();
    // Database tests read DATABASE_URL: a throwaway server unless one is given. It stops
    // (and its data goes) when `database` is dropped, on every path out of this block.
    let database = crate::services::native::database_session(
        &project::xtask_dir().join("test-database"),
        DATABASE_NAME,
    )?;
    let exports = database.as_ref().map(|db| db.state.exports()).unwrap_or_default();
    for step in &steps {
        eprintln!("==> {}: cargo {}", step.name, step.cargo_args.join(" "));
        let mut child = project::cargo()
            .args(&step.cargo_args)
            .envs(exports.iter().map(|(k, v)| (k, v)))
            .spawn()
            .with_context(|| format!("running cargo for the {}", step.name))?;
        let status = crate::interrupts::wait_child(&mut child, std::time::Duration::from_secs(10))?;
        crate::interrupts::check_interrupted()?;
        if !status.success() {
            failed.push(step.name);
        }
    }
    drop(database);
    // Then the end-to-end tests against the real services.
    eprintln!("==> end-to-end tests: cargo xtask ci-native");
    match crate::cli::ci::native_default() {
        Ok(()) => {}
        Err(err) if crate::interrupts::interrupted().is_some() => return Err(err),
        Err(err) => {
            if err.downcast_ref::<Exit>().is_none() {
                eprintln!("error: {err:#}");
            }
            failed.push("end-to-end tests");
        }
    }
    if failed.is_empty() {
        eprintln!("==> all {} test steps passed", steps.len() + 1);
        Ok(())
    } else {
        eprintln!("error: failing test steps: {}", failed.join(", "));
        Err(Exit(1).into())
    }
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
    fn extra_arguments_reach_every_step() {
        let steps = plan(Runner::Nextest, &["merge".to_owned()]);
        assert!(steps.iter().all(|s| s.cargo_args.last().map(String::as_str) == Some("merge")));
    }
}
