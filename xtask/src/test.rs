//! `cargo xtask test`: the whole test suite, as CI runs it.
//!
//! First the pre-flight checks (the machine's requirements, installed where xtask may; no
//! live session in the way; no stale generated file), so nothing is compiled for a run
//! that cannot finish. Then the steps (see [`plan`]), each a cargo invocation with the
//! same `DATABASE_URL` (the Docker backend's tests among the unit tests where an engine
//! is reachable), then the end-to-end tests (`ci-native`). Every step runs, without
//! fail-fast, even when an earlier one failed, so one run shows every failure; the task
//! fails when any step did, and ends with a table of the steps and one count of tests.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::ci::tally::{self, Counts};
use crate::github;
use crate::requirements::{self, Requirement};
use crate::sys::error::Exit;
use crate::sys::{command, fs, paths};

#[derive(clap::Args)]
#[command(after_help = "\
Runs, after pre-flight checks: the workspace's unit and integration tests (cargo-nextest,
no fail-fast) and the doc tests against a throwaway PostgreSQL (DATABASE_URL, unless it is
set), with the Docker backend's tests among them where a Docker engine is reachable
(skipped, and said so, elsewhere); then the end-to-end tests (`cargo xtask ci-native`,
with the Ruby worker).
Ends with a table of the steps, the count of passed, failed and skipped tests, and where
the JUnit reports, timings and logs are.

Needs cargo-nextest, Ruby (with Fiddle, minitest and bundler) and the PostgreSQL server
(unless DATABASE_URL is set). Missing ones are installed before anything is built, each
announced in one line, where xtask may: apt-get as root on Debian/Ubuntu (or in CI with
passwordless sudo), `cargo install --locked cargo-nextest@<pinned>`. Elsewhere, or with
--no-install, the run stops there with the command to run (exit 2).

With --stress, the stress tier as well: each stress test in its full form (TASKER_TEST_STRESS=1:
the fifty up/down cycles, not five) and the tests kept for it (the clone-based checkout test,
left out of nextest's default filter). The nightly CI run uses it.

Examples:
  cargo xtask test                      the whole suite
  cargo xtask test --stress             the whole suite, stress tests in full
  cargo xtask test --skip-end-to-end    unit, integration and doc tests only
  cargo xtask test -- merge             only tests whose name contains `merge`")]
pub struct Args {
    /// Only the unit, integration and doc tests, not the end-to-end nor the Docker
    /// backend's (CI runs those in jobs of their own)
    #[arg(long)]
    skip_end_to_end: bool,
    /// Also the stress tier: every stress test in its full form, and the tests only the
    /// stress tier runs (the nightly CI run does this)
    #[arg(long)]
    stress: bool,
    /// Install nothing: a missing requirement is an error naming the command to run
    /// (also: TASKER_XTASK_NO_INSTALL=1)
    #[arg(long)]
    no_install: bool,
    /// Arguments after `--` go to every cargo test run (test name filters, cargo flags)
    #[arg(last = true, value_name = "CARGO_ARGS")]
    cargo_args: Vec<String>,
}

/// The database created in the throwaway cluster; each database test creates its own
/// databases from the server URL.
const DATABASE_NAME: &str = "tasker_test";

/// Set to `1` for the stress tier: a stress test reads it and runs its full form (the
/// fifty up/down cycles); without it, its short form (five), which proves the same on
/// every run in a tenth of the time.
pub const STRESS_VAR: &str = "TASKER_TEST_STRESS";

/// nextest runs as many tests at once as the machine has cores by default. This suite's
/// tests mostly wait (on processes, the database, visibility timeouts), so on a small
/// machine that leaves the CPU idle: on 2 cores, 2 at once kept 1.2 cores busy and took
/// 43-48 s, 4 at once took 27-30 s (docs/analysis/ci-speed.md). At least this many, then.
pub const MIN_TEST_THREADS: usize = 4;

/// `NEXTEST_TEST_THREADS` for the unit tests: raised to [`MIN_TEST_THREADS`] on a machine
/// with fewer cores, unless the caller set it.
pub fn test_threads(cores: usize, set: bool) -> Option<(String, String)> {
    (!set && cores < MIN_TEST_THREADS)
        .then(|| ("NEXTEST_TEST_THREADS".to_string(), MIN_TEST_THREADS.to_string()))
}

/// One cargo invocation of the suite.
#[derive(Debug, PartialEq, Eq)]
pub struct Step {
    pub name: &'static str,
    pub cargo_args: Vec<String>,
}

/// The suite's cargo steps, in order. Pure, so the shape of the suite is unit-tested.
/// The stress tier also runs what nextest's default filter leaves out
/// (`.config/nextest.toml`: the tests kept for the stress tier). With `docker` (an engine
/// answers), the unit tests include the ignored ones: every ignored test of the
/// workspace is a Docker backend test (a test below keeps it so). They wait on Docker
/// while the unit tests use the CPU, a few at a time (their nextest test group).
pub fn plan(extra: &[String], stress: bool, docker: bool) -> Vec<Step> {
    let with_extra = |args: &[&str]| -> Vec<String> {
        args.iter().map(|a| a.to_string()).chain(extra.iter().cloned()).collect()
    };
    let mut unit = vec!["nextest", "run", "--workspace", "--no-fail-fast"];
    if stress {
        unit.push("--ignore-default-filter");
    }
    let name = if docker {
        unit.extend(["--run-ignored", "all"]);
        UNIT_AND_DOCKER
    } else {
        "unit and integration tests"
    };
    vec![
        Step { name, cargo_args: with_extra(&unit) },
        Step {
            name: "doc tests",
            cargo_args: with_extra(&["test", "--workspace", "--doc", "--no-fail-fast"]),
        },
    ]
}

/// The unit step's name when the Docker backend's tests run in it.
const UNIT_AND_DOCKER: &str = "unit, integration and Docker backend tests";

/// The row for the Docker backend's tests when they do not run.
const DOCKER_TESTS: &str = "Docker backend tests";

/// What the suite needs from the machine.
pub fn needs(database_given: bool) -> Vec<Requirement> {
    let mut needs = vec![Requirement::Ruby, Requirement::Nextest];
    if !database_given {
        needs.insert(0, Requirement::Postgres);
    }
    needs
}

/// How a step ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Passed,
    Failed,
    Skipped(String),
}

/// One row of the final table.
#[derive(Debug, Clone)]
pub struct Row {
    pub step: &'static str,
    pub took: Duration,
    pub outcome: Outcome,
    pub counts: Option<Counts>,
}

impl Row {
    fn skipped(step: &'static str, why: String) -> Row {
        let outcome = Outcome::Skipped(why);
        Row { step, took: Duration::ZERO, outcome, counts: None }
    }
}

/// The final table: every step, its time, its outcome and its tests; then the totals.
pub fn summary(rows: &[Row]) -> String {
    let width = rows.iter().map(|r| r.step.len()).max().unwrap_or(0).max("total".len());
    let mut out = format!("{:<width$}  {:>8}  {:<7}  tests\n", "step", "seconds", "result");
    let mut total = Counts::default();
    for row in rows {
        let (result, note) = match &row.outcome {
            Outcome::Passed => ("ok", String::new()),
            Outcome::Failed => ("FAILED", String::new()),
            Outcome::Skipped(why) => ("skipped", format!("({why})")),
        };
        let tests = row.counts.map(|c| c.to_string()).unwrap_or(note);
        out.push_str(&format!(
            "{:<width$}  {:>8.1}  {result:<7}  {tests}\n",
            row.step,
            row.took.as_secs_f64()
        ));
        total += row.counts.unwrap_or_default();
    }
    let took: Duration = rows.iter().map(|r| r.took).sum();
    out.push_str(&format!(
        "{:<width$}  {:>8.1}  {:<7}  {total}\n",
        "total",
        took.as_secs_f64(),
        ""
    ));
    out
}

/// The pre-flight checks: everything that would stop the run later, before it compiles.
fn preflight(args: &Args) -> anyhow::Result<()> {
    let database_given = std::env::var_os("DATABASE_URL").is_some_and(|url| !url.is_empty());
    requirements::ensure(&needs(database_given))?;
    if !args.skip_end_to_end {
        // ci-native's state directory: a `services up` session there would stop it.
        crate::services::ensure_no_session(&paths::xtask_dir())?;
    }
    let mut stale: Vec<(PathBuf, &str)> = crate::config::stale_generated()?
        .into_iter()
        .map(|path| (path, "cargo xtask config --all"))
        .collect();
    let manifest = crate::services::manifest::load(&crate::services::manifest::default_path())?;
    let docker_dir = paths::root().join("docker");
    stale.extend(
        crate::services::refresh_docker_files(&manifest, &docker_dir, true)?
            .into_iter()
            .map(|path| (path, "cargo xtask docker generate")),
    );
    if !stale.is_empty() {
        let files: Vec<String> = stale.iter().map(|(p, _)| paths::display_path(p)).collect();
        let mut commands: Vec<&str> = stale.iter().map(|(_, c)| *c).collect();
        commands.dedup();
        crate::user_error!(
            "generated files differ from their sources: {}: regenerate them with `{}` and commit them",
            files.join(", "),
            commands.join("` and `")
        );
    }
    Ok(())
}

pub fn run(args: Args) -> anyhow::Result<()> {
    crate::sys::interrupts::catch_interrupts();
    github::start_clock();
    if args.no_install {
        requirements::forbid_installs();
    }
    let started = std::time::SystemTime::now();
    let began = Instant::now();
    github::phase("pre-flight checks");
    preflight(&args)?;
    let preflight_row = Row {
        step: "pre-flight checks",
        took: began.elapsed(),
        outcome: Outcome::Passed,
        counts: None,
    };
    let mut rows: Vec<Row> = vec![preflight_row];
    let docker = match args.skip_end_to_end {
        true => Err("--skip-end-to-end".to_string()),
        false => crate::services::ensure_docker_engine()
            .map(|_| ())
            .map_err(|why| format!("no Docker engine: {why}")),
    };
    if let Err(why) = &docker {
        eprintln!("==> {} {DOCKER_TESTS}: skipped: {why}", github::elapsed());
        rows.push(Row::skipped(DOCKER_TESTS, why.clone()));
    }
    let steps = plan(&args.cargo_args, args.stress, docker.is_ok());
    let stress: Vec<(String, String)> = match args.stress {
        true => vec![(STRESS_VAR.to_string(), "1".to_string())],
        false => Vec::new(),
    };
    // Database tests read DATABASE_URL: a throwaway server unless one is given. It stops
    // (and its data goes) when `database` is dropped, on every path out of this block.
    let database = crate::services::database_session(
        &paths::xtask_dir().join("test-database"),
        DATABASE_NAME,
    )?;
    let mut exports = database.as_ref().map(|db| db.state.exports()).unwrap_or_default();
    exports.extend(stress.iter().cloned());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    exports.extend(test_threads(cores, std::env::var_os("NEXTEST_TEST_THREADS").is_some()));
    for step in &steps {
        github::phase(step.name);
        rows.push(run_step(step, &exports)?);
    }
    drop(database);

    if args.skip_end_to_end {
        rows.push(Row::skipped("end-to-end tests", "--skip-end-to-end".to_string()));
    } else {
        // Then the end-to-end tests against the real services (ci-native prints its own
        // phases, table and paths).
        let e2e_began = Instant::now();
        let options = crate::ci::pipeline::Options::native_defaults();
        let (result, counts) = crate::ci::pipeline::run_counted(&options);
        let outcome = match result {
            Ok(()) => Outcome::Passed,
            Err(err) if crate::sys::interrupts::interrupted().is_some() => return Err(err),
            Err(err) => {
                if err.downcast_ref::<Exit>().is_none() {
                    eprintln!("error: {err:#}");
                }
                Outcome::Failed
            }
        };
        let took = e2e_began.elapsed();
        rows.push(Row { step: "end-to-end tests", took, outcome, counts });
    }
    github::end_phase();
    let failed: Vec<&str> =
        rows.iter().filter(|r| r.outcome == Outcome::Failed).map(|r| r.step).collect();
    record(&rows, started, began, failed.is_empty());

    eprint!("\n{}", summary(&rows));
    report_paths();
    let _ = github::step_summary(&format!("### cargo xtask test\n\n```\n{}```\n", summary(&rows)));
    let skipped: Vec<String> = rows
        .iter()
        .filter_map(|r| match &r.outcome {
            Outcome::Skipped(why) => Some(format!("{} ({why})", r.step)),
            _ => None,
        })
        .collect();
    let skipped = match skipped.is_empty() {
        true => String::new(),
        false => format!("; skipped steps: {}", skipped.join(", ")),
    };
    // The pre-flight checks are not a test step.
    let skipped_steps = rows.iter().filter(|r| matches!(r.outcome, Outcome::Skipped(_))).count();
    let ran = rows.len() - 1 - skipped_steps;
    if failed.is_empty() {
        eprintln!("==> all {ran} test steps passed{skipped}");
        Ok(())
    } else {
        eprintln!("error: failing test steps: {}{skipped}", failed.join(", "));
        Err(Exit(1).into())
    }
}

/// The run history and the step timings (`target/xtask/test-timings.json`).
fn record(rows: &[Row], started: std::time::SystemTime, began: Instant, passed: bool) {
    let mut timings = crate::timings::Timings::default();
    for row in rows.iter().filter(|r| !matches!(r.outcome, Outcome::Skipped(_))) {
        timings.add(row.step, row.took);
    }
    let _ = fs::write_atomic(
        &timings_path(),
        serde_json::to_string_pretty(&timings.json()).unwrap_or_default() + "\n",
    );
    let record = crate::ci::history::Run {
        mode: "test",
        started_unix: started
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0),
        wall_seconds: began.elapsed().as_secs_f64(),
        phases: &timings.phases,
        outcome: if passed { "passed" } else { "failed" },
        cases: &[],
        startup_failure: None,
        commit: crate::ci::history::commit(),
        shard: None,
        workflow: crate::github::WorkflowRun::current(),
    }
    .record();
    let history = crate::ci::history::default_path();
    if let Err(err) = crate::ci::history::append(&history, &record) {
        eprintln!("warning: could not add this run to {}: {err:#}", paths::display_path(&history));
    }
}

fn timings_path() -> PathBuf {
    paths::xtask_dir().join("test-timings.json")
}

/// Where this run's reports are, for the person reading the end of the output.
fn report_paths() {
    let nextest = paths::target_dir().join("nextest");
    let xtask = paths::xtask_dir();
    let reports = [
        ("JUnit, unit and integration tests", nextest.join("default").join("junit.xml")),
        ("JUnit, end-to-end tests", nextest.join("ci").join("junit.xml")),
        ("step timings", timings_path()),
        ("end-to-end phase timings", xtask.join("timings.json")),
        ("service logs", xtask.join("logs")),
        ("run history", crate::ci::history::default_path()),
    ];
    for (what, path) in reports.iter().filter(|(_, path)| path.exists()) {
        eprintln!("{what}: {}", paths::display_path(path));
    }
}

/// Runs one cargo step with `env`, counting its tests.
fn run_step(step: &Step, env: &[(String, String)]) -> anyhow::Result<Row> {
    eprintln!("xtask: cargo {}", step.cargo_args.join(" "));
    let began = Instant::now();
    let mut command = command::cargo();
    command
        .args(&step.cargo_args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(std::process::Stdio::null());
    let (status, counts) = tally::run(&mut command, Duration::from_secs(10))?;
    crate::sys::interrupts::check_interrupted()?;
    let outcome = if status.success() { Outcome::Passed } else { Outcome::Failed };
    Ok(Row { step: step.name, took: began.elapsed(), outcome, counts: Some(counts) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args_of(steps: &[Step]) -> Vec<String> {
        steps.iter().map(|s| s.cargo_args.join(" ")).collect()
    }

    #[test]
    fn nextest_runs_the_workspace_then_doc_tests_without_fail_fast() {
        assert_eq!(
            args_of(&plan(&[], false, false)),
            ["nextest run --workspace --no-fail-fast", "test --workspace --doc --no-fail-fast"]
        );
    }

    #[test]
    fn the_stress_tier_also_runs_what_the_default_filter_leaves_out() {
        assert_eq!(
            args_of(&plan(&[], true, false))[0],
            "nextest run --workspace --no-fail-fast --ignore-default-filter"
        );
        // What it leaves out, and the Docker tests (ignored, run by their own step).
        let config = std::fs::read_to_string(paths::root().join(".config/nextest.toml")).unwrap();
        let config: toml_edit::DocumentMut = config.parse().unwrap();
        let filter = config["profile"]["default"]["default-filter"].as_str().unwrap();
        assert_eq!(filter, "not (package(xtask) and binary(checkout))");
    }

    #[test]
    fn the_unit_tests_select_the_whole_workspace_like_the_pipelines_build() {
        // Cargo unifies features per selection: the pipeline's build after the unit tests
        // compiles nothing but the end-to-end tests.
        let workspace = "--workspace".to_string();
        assert!(plan(&[], false, false)[0].cargo_args.contains(&workspace));
        assert!(plan(&[], false, true)[0].cargo_args.contains(&workspace));
        assert!(crate::ci::build::build_commands(false).iter().all(|c| c.contains(&workspace)));
    }

    #[test]
    fn with_an_engine_the_unit_tests_include_the_ignored_ones() {
        let steps = plan(&["crash".to_owned()], false, true);
        assert_eq!(steps[0].name, UNIT_AND_DOCKER);
        assert_eq!(
            steps[0].cargo_args.join(" "),
            "nextest run --workspace --no-fail-fast --run-ignored all crash"
        );
        assert!(!plan(&[], false, false)[0].cargo_args.contains(&"--run-ignored".to_owned()));
    }

    /// `--run-ignored all` runs every ignored test: they must all be the Docker backend's
    /// (which need an engine and are run only where one answers), and those run a few at
    /// a time, in their nextest test group.
    #[test]
    fn every_ignored_test_is_a_docker_backend_test() {
        let root = paths::root();
        let mut ignored = Vec::new();
        for dir in ["src", "crates", "xtask", "workers", "tests", "examples"] {
            for file in xtask_sys::fs::files_below(&root.join(dir), "rs") {
                let text = std::fs::read_to_string(&file).unwrap();
                let count = text.lines().filter(|l| l.trim_start().starts_with("#[ignore")).count();
                if count > 0 {
                    ignored.push((paths::display_path(&file), count));
                }
            }
        }
        assert_eq!(ignored, [("xtask/tests/docker_backend.rs".to_string(), 7)]);
        let config = std::fs::read_to_string(root.join(".config/nextest.toml")).unwrap();
        let config: toml_edit::DocumentMut = config.parse().unwrap();
        let override_ = &config["profile"]["default"]["overrides"][0];
        assert_eq!(override_["filter"].as_str(), Some("package(xtask) and binary(docker_backend)"));
        assert_eq!(override_["test-group"].as_str(), Some("docker"));
    }

    #[test]
    fn extra_arguments_reach_every_step() {
        let steps = plan(&["merge".to_owned()], true, true);
        assert!(steps.iter().all(|s| s.cargo_args.last().map(String::as_str) == Some("merge")));
    }

    #[test]
    fn small_machines_run_at_least_four_tests_at_once_unless_told_otherwise() {
        let four = Some(("NEXTEST_TEST_THREADS".to_string(), "4".to_string()));
        assert_eq!(test_threads(2, false), four);
        assert_eq!(test_threads(1, false), four);
        assert_eq!(test_threads(2, true), None);
        assert_eq!(test_threads(4, false), None);
        assert_eq!(test_threads(16, false), None);
    }

    #[test]
    fn ruby_and_nextest_are_always_needed_postgres_unless_given() {
        use Requirement::*;
        assert_eq!(needs(false), [Postgres, Ruby, Nextest]);
        assert_eq!(needs(true), [Ruby, Nextest]);
    }

    #[test]
    fn the_summary_counts_every_step_and_shows_skipped_ones() {
        let counts = |passed, failed, skipped| Some(Counts { passed, failed, skipped });
        let row = |step, secs, outcome, counts| Row {
            step,
            took: Duration::from_secs(secs),
            outcome,
            counts,
        };
        let rows = vec![
            Row::skipped(DOCKER_TESTS, "no Docker engine".into()),
            row("unit and integration tests", 53, Outcome::Failed, counts(209, 2, 6)),
            row("doc tests", 5, Outcome::Passed, counts(3, 0, 0)),
        ];
        let table = summary(&rows);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 5, "{table}");
        assert!(lines[1].contains("skipped") && lines[1].ends_with("(no Docker engine)"));
        assert!(
            lines[2].contains("FAILED") && lines[2].ends_with("209 passed, 2 failed, 6 skipped")
        );
        assert!(
            lines[4].starts_with("total") && lines[4].ends_with("212 passed, 2 failed, 6 skipped")
        );
        assert!(lines[4].contains("58.0"), "{table}");
    }
}
