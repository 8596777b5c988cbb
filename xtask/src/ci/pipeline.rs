//! The CI pipeline, written once for both backends: build the service and test binaries,
//! start a session, run the end-to-end tests with nextest's `ci` profile against it,
//! collect logs on failure, tear down on every path, report phase timings.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use super::build::{self, TESTS_ARCHIVE, TestBinaries};
use crate::ci::tally;
use crate::github;
use crate::requirements::{self, Requirement};
use crate::services::{self, Backend, Session, UpOptions, logs, manifest, readiness, state};
use crate::sys::error::Exit;
use crate::sys::{command, error, fs, interrupts, paths};
use crate::timings::Timings;

pub struct Options {
    pub up: UpOptions,
    /// The binaries exist already: do not build.
    pub no_build: bool,
    /// Take the service binaries and the tests from a directory `ci-archive` made
    /// (another job built them): nothing is compiled.
    pub from_archive: Option<PathBuf>,
    /// One shard of the tests (`hash:M/N`), passed to nextest.
    pub partition: Option<String>,
    pub nextest_args: Vec<String>,
}

impl Options {
    /// `ci-native` with every default (as `cargo xtask test` runs it).
    pub fn native_defaults() -> Options {
        Options {
            up: UpOptions::defaults(Backend::Native),
            no_build: false,
            from_archive: None,
            partition: None,
            nextest_args: Vec::new(),
        }
    }
}

/// Runs the pipeline and reports its timings, whatever the outcome.
pub fn run(options: &Options) -> anyhow::Result<()> {
    run_counted(options).0
}

/// [`run`], also returning what the end-to-end tests counted (when they ran).
pub fn run_counted(options: &Options) -> (anyhow::Result<()>, Option<tally::Counts>) {
    interrupts::catch_interrupts();
    github::start_clock();
    if let Some(partition) = &options.partition
        && let Err(why) = check_partition(partition)
    {
        return (Err(error::UserError(why).into()), None);
    }
    let mut timings = Timings::default();
    let started = std::time::SystemTime::now();
    let began = Instant::now();
    let mut startup_failure = None;
    let mut counts = None;
    let result = stages(options, &mut timings, &mut startup_failure, &mut counts);
    github::end_phase();
    // A mistake in the input stops before anything ran: no timings, no history.
    if !matches!(&result, Err(err) if err.downcast_ref::<error::UserError>().is_some()) {
        report_timings(&timings, options.up.backend, &options.up.state_dir);
        if let Some(counts) = counts {
            eprintln!("end-to-end tests: {counts}");
        }
        // A run that left a service out never reads as a full pass.
        if !options.up.without.is_empty() {
            eprintln!("left out: {} and their tests (--without)", options.up.without.join(", "));
        }
        report_paths(&options.up.state_dir, options.up.backend, result.is_err());
        let outcome = match &result {
            Ok(()) => "passed",
            Err(_) if interrupts::interrupted().is_some() => "interrupted",
            Err(_) if startup_failure.is_some() => "startup-failed",
            Err(err) if err.downcast_ref::<Exit>().is_some() => "failed",
            Err(_) => "error",
        };
        record_history(
            options.up.backend.name(),
            options.partition.as_deref(),
            started,
            began,
            &timings,
            outcome,
            startup_failure,
        );
    }
    (result, counts)
}

/// Where this run left what a person may want to read, success or not.
fn report_paths(state_dir: &Path, backend: Backend, failed: bool) {
    let show = |path: &Path| paths::display_path(path);
    let logs = match backend {
        Backend::Native => state::log_dir(state_dir),
        Backend::Docker => ci_logs_dir(state_dir, backend),
    };
    if backend == Backend::Native || failed {
        eprintln!("logs:     {}/", show(&logs));
    }
    let ci_logs = ci_logs_dir(state_dir, backend);
    if failed && backend == Backend::Native && ci_logs.is_dir() {
        eprintln!("          {}/ (copied for upload)", show(&ci_logs));
    }
    for (what, path) in [
        ("timings:", state_dir.join("timings.json")),
        ("JUnit:", junit_report()),
        ("history:", crate::ci::history::default_path()),
    ] {
        if path.is_file() {
            eprintln!("{what:<9} {}", show(&path));
        }
    }
}

/// The JUnit report of the end-to-end tests (nextest's `ci` profile).
fn junit_report() -> PathBuf {
    paths::target_dir().join("nextest").join("ci").join("junit.xml")
}

/// Appends this run to the history; reports its flaky tests (here and in the step
/// summary). A history that cannot be written is a warning, never the run's failure.
fn record_history(
    mode: &str,
    shard: Option<&str>,
    started: std::time::SystemTime,
    began: Instant,
    timings: &Timings,
    outcome: &str,
    startup_failure: Option<crate::ci::history::StartupFailure>,
) {
    // Only this run's report: an older file is another run's.
    let report = junit_report();
    let fresh = std::fs::metadata(&report).and_then(|m| m.modified()).is_ok_and(|m| m >= started);
    let cases = match fresh.then(|| std::fs::read_to_string(&report)) {
        Some(Ok(text)) => crate::ci::junit::parse(&text).unwrap_or_default(),
        _ => Vec::new(),
    };
    let flaky: Vec<&str> = cases.iter().filter(|c| c.flaky).map(|c| c.name.as_str()).collect();
    if !flaky.is_empty() {
        eprintln!("warning: flaky tests (failed, then passed on a retry): {}", flaky.join(", "));
        let list: String = flaky.iter().map(|name| format!("- `{name}`\n")).collect();
        let _ = github::step_summary(&format!(
            "### Flaky tests\n\nFailed, then passed on a retry:\n\n{list}\n"
        ));
    }
    let started_unix =
        started.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0);
    let record = crate::ci::history::Run {
        mode,
        started_unix,
        wall_seconds: began.elapsed().as_secs_f64(),
        phases: &timings.phases,
        outcome,
        cases: &cases,
        startup_failure,
        commit: crate::ci::history::commit(),
        shard,
        workflow: github::WorkflowRun::current(),
    }
    .record();
    let path = crate::ci::history::default_path();
    if let Err(err) = crate::ci::history::append(&path, &record) {
        eprintln!("warning: could not add this run to {}: {err:#}", paths::display_path(&path));
    }
}

/// What the machine must have for a pipeline run: nextest for the tests; natively, the
/// PostgreSQL server (unless DATABASE_URL names one) and what the required services it
/// starts need (an optional service is skipped, not installed for).
pub fn needs(
    manifest: &manifest::Manifest,
    backend: Backend,
    without: &[String],
    database_given: bool,
) -> Vec<Requirement> {
    let mut needs = vec![Requirement::Nextest];
    if backend == Backend::Native {
        if !database_given {
            needs.push(Requirement::Postgres);
        }
        let started =
            manifest.services.iter().filter(|s| !s.optional && !without.contains(&s.name));
        let programs = started
            .flat_map(|s| &s.step.requires)
            .chain(manifest.migrate.iter().flat_map(|m| &m.requires));
        needs.extend(programs.filter_map(|program| Requirement::providing(program)));
    }
    needs.sort();
    needs.dedup();
    needs
}

/// Where logs are copied for the workflow to upload when a run fails.
pub fn ci_logs_dir(state_dir: &Path, backend: Backend) -> PathBuf {
    match backend {
        Backend::Native => state_dir.join("ci-logs"),
        Backend::Docker => state_dir.join("ci-logs").join("docker"),
    }
}

fn stages(
    options: &Options,
    timings: &mut Timings,
    startup_failure: &mut Option<crate::ci::history::StartupFailure>,
    counts: &mut Option<tally::Counts>,
) -> anyhow::Result<()> {
    let up = &options.up;
    // One run per state directory, from before the build until after the teardown.
    let _lock = state::StateLock::acquire(&up.state_dir)?;
    let manifest = manifest::load(&up.manifest)?;
    // Checked again by `prepare`; here so a live session or a missing engine fails
    // before a long build.
    services::ensure_no_session(&up.state_dir)?;
    if up.backend == Backend::Docker {
        services::ensure_docker_engine()?;
    }
    let database_given = std::env::var_os("DATABASE_URL").is_some_and(|url| !url.is_empty());
    let needed = needs(&manifest, up.backend, &up.without, database_given);
    if let Some(missing) = requirements::check(&needed)? {
        // Installing can take minutes (cargo-nextest compiles): a phase of its own.
        github::phase("install requirements");
        timings.time("install", || missing.install())?;
    }
    // Logs of an earlier failed run must not pass for this run's.
    let ci_logs = ci_logs_dir(&up.state_dir, up.backend);
    let _ = std::fs::remove_dir_all(up.state_dir.join("ci-logs"));
    if let Some(dir) = &options.from_archive {
        timings.time("restore", || build::restore(dir, up.release))?;
    } else if !options.no_build {
        github::phase("build");
        timings.time("build", || build::build(up.release))?;
    }
    interrupts::check_interrupted()?;

    github::phase(&format!("start the services ({})", up.backend.name()));

    let prepared = services::prepare(manifest, up, timings)?;
    let session = match services::start(prepared, up, timings) {
        Ok(session) => session,
        Err(err) if interrupts::interrupted().is_some() => return Err(err),
        Err(err) => {
            let service = match err.downcast_ref::<readiness::Failure>() {
                Some(readiness::Failure::Exited { name, .. }) => Some(name.clone()),
                Some(readiness::Failure::Timeout { pending, .. }) if pending.len() == 1 => {
                    Some(pending[0].0.clone())
                }
                _ => None,
            };
            *startup_failure = Some(crate::ci::history::StartupFailure {
                service,
                message: err.to_string().lines().next().unwrap_or_default().to_string(),
            });
            // The session has been torn down; its logs remain.
            github::error(&format!(
                "services did not start: {}",
                err.to_string().lines().next().unwrap_or_default()
            ));
            let copied = logs::collect(&state::log_dir(&up.state_dir), &ci_logs);
            eprintln!("xtask: copied {copied} log(s) to {}", paths::display_path(&ci_logs));
            return Err(err);
        }
    };
    test_and_teardown(options, session, &ci_logs, timings, counts)
}

fn test_and_teardown(
    options: &Options,
    session: Session,
    ci_logs: &Path,
    timings: &mut Timings,
    counts: &mut Option<tally::Counts>,
) -> anyhow::Result<()> {
    let exports = services::write_exports(&session.state, false)?;
    let root = paths::root();
    let archive = options.from_archive.as_ref().map(|dir| dir.join(TESTS_ARCHIVE));
    let binaries = match &archive {
        Some(file) => TestBinaries::Archive { file, root: &root },
        None => TestBinaries::Workspace { release: options.up.release },
    };
    let nextest = nextest_args(
        binaries,
        options.partition.as_deref(),
        &session.state.excluded_tests,
        &options.nextest_args,
    );
    github::phase("end-to-end tests");
    eprintln!("xtask: cargo {}", nextest.join(" "));
    let started = Instant::now();
    let mut command = command::cargo();
    command
        .args(&nextest)
        .envs(exports.iter().map(|(k, v)| (k, v)))
        // The tests scale their own waits by the same factor as xtask's startup.
        .env(readiness::MULTIPLIER_VAR, readiness::multiplier().to_string())
        .stdin(Stdio::null());
    let status = tally::run(&mut command, Duration::from_secs(10)).map(|(status, counted)| {
        *counts = Some(counted);
        status
    });
    timings.add("tests", started.elapsed());
    let failed = !matches!(&status, Ok(s) if s.success());
    let dead = session.dead_services();
    let state = session.state.clone();
    let grace = interrupts::grace(Duration::from_secs(5));
    github::phase("teardown");
    let report = timings.time("teardown", || session.teardown(grace, failed));
    if !report.killed.is_empty() {
        eprintln!("warning: needed SIGKILL: {}", report.killed.join(", "));
    }
    if failed {
        let copied = logs::collect(&state::log_dir(&state.dir), ci_logs);
        eprintln!("xtask: copied {copied} log(s) to {}", paths::display_path(ci_logs));
        if dead.is_empty() {
            eprintln!(
                "xtask: every service was still running when the tests ended; see their logs there"
            );
        }
        for service in state.services.iter().filter(|s| dead.contains(&s.name)) {
            github::group(
                &format!("{} stopped during the tests: last 30 lines of its log", service.name),
                || println!("{}", logs::tail(&service.log, 30)),
            );
        }
    }
    interrupts::check_interrupted()?;
    let status = status?;
    match status.code() {
        Some(0) => Ok(()),
        Some(code) => {
            github::error(&format!("end-to-end tests failed (nextest exit code {code})"));
            Err(Exit(code.clamp(1, 255) as u8).into())
        }
        None => Err(Exit(1).into()),
    }
}

/// The `cargo nextest run` arguments. Filters of skipped services' tests are combined
/// with the user's own `-E` expression (nextest ORs separate `-E`s, so they must be merged).
pub fn nextest_args(
    binaries: TestBinaries,
    partition: Option<&str>,
    excluded: &[String],
    user: &[String],
) -> Vec<String> {
    let mut args: Vec<String> = ["nextest", "run", "--profile", "ci"].map(String::from).to_vec();
    args.extend(binaries.selection());
    if let Some(partition) = partition {
        args.extend(["--partition".to_string(), partition.to_string()]);
    }
    let exclusion = excluded.iter().map(|f| format!("not ({f})")).collect::<Vec<_>>().join(" and ");
    let mut merged = false;
    let mut user = user.to_vec();
    if !exclusion.is_empty() {
        let mut i = 0;
        while i < user.len() {
            let flag =
                ["-E", "--filter-expr", "--filterset"].iter().find(|f| user[i] == **f).copied();
            if let Some(_flag) = flag
                && i + 1 < user.len()
            {
                user[i + 1] = format!("({}) and {exclusion}", user[i + 1]);
                merged = true;
                i += 2;
                continue;
            }
            for prefix in ["--filter-expr=", "--filterset="] {
                if let Some(expr) = user[i].strip_prefix(prefix) {
                    user[i] = format!("{prefix}({expr}) and {exclusion}");
                    merged = true;
                }
            }
            i += 1;
        }
        if !merged {
            args.extend(["-E".to_string(), exclusion]);
        }
    }
    args.extend(user);
    args
}

fn check_partition(partition: &str) -> Result<(), String> {
    let valid = partition.split_once(':').is_some_and(|(kind, shard)| {
        matches!(kind, "hash" | "count" | "slice")
            && shard.split_once('/').is_some_and(|(m, n)| {
                matches!((m.parse::<u32>(), n.parse::<u32>()), (Ok(m), Ok(n)) if m >= 1 && m <= n)
            })
    });
    if valid {
        Ok(())
    } else {
        Err(format!("--partition `{partition}` is not of the form hash:M/N (1 <= M <= N)"))
    }
}

fn report_timings(timings: &Timings, backend: Backend, state_dir: &Path) {
    if timings.phases.is_empty() {
        return;
    }
    eprint!("\n{}", timings.table());
    let _ = fs::write_atomic(
        &state_dir.join("timings.json"),
        serde_json::to_string_pretty(&timings.json()).unwrap_or_default() + "\n",
    );
    let _ =
        github::step_summary(&timings.markdown(&format!("ci-{} phase timings", backend.name())));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn the_test_run_uses_the_ci_profile_and_passes_partition_and_args() {
        let workspace = TestBinaries::Workspace { release: false };
        let args = nextest_args(workspace, Some("hash:1/2"), &[], &s(&["--no-fail-fast"]));
        assert_eq!(
            args.join(" "),
            "nextest run --profile ci --workspace --features tasker-core/test-services --test e2e_* --partition hash:1/2 --no-fail-fast"
        );
        assert_eq!(
            build::no_run_args(true).join(" "),
            "nextest run --profile ci --workspace --features tasker-core/test-services --test e2e_* --release --no-run"
        );
        let archive =
            TestBinaries::Archive { file: Path::new("/a/tests.tar.zst"), root: Path::new("/r") };
        assert_eq!(
            nextest_args(archive, Some("hash:2/2"), &[], &[]).join(" "),
            "nextest run --profile ci --archive-file /a/tests.tar.zst --workspace-remap /r --partition hash:2/2"
        );
    }

    #[test]
    fn skipped_services_tests_are_filtered_out_even_with_a_user_filter() {
        let excluded = s(&["binary(ruby)"]);
        let workspace = TestBinaries::Workspace { release: false };
        let args = nextest_args(workspace, None, &excluded, &[]);
        assert_eq!(args[args.len() - 2..], s(&["-E", "not (binary(ruby))"]));
        let args = nextest_args(workspace, None, &excluded, &s(&["-E", "test(a)"]));
        assert_eq!(args[args.len() - 2..], s(&["-E", "(test(a)) and not (binary(ruby))"]));
        let args = nextest_args(workspace, None, &excluded, &s(&["--filterset=test(a)"]));
        assert_eq!(args.last().unwrap(), "--filterset=(test(a)) and not (binary(ruby))");
    }

    #[test]
    fn partition_must_be_a_shard() {
        assert!(check_partition("hash:1/3").is_ok());
        assert!(check_partition("count:3/3").is_ok());
        assert!(check_partition("hash:4/3").is_err());
        assert!(check_partition("1/3").is_err());
    }

    #[test]
    fn the_pipeline_needs_what_its_services_need() {
        let manifest = manifest::load(&manifest::default_path()).unwrap();
        let none: &[String] = &[];
        use Requirement::*;
        assert_eq!(needs(&manifest, Backend::Native, none, false), [Postgres, Ruby, Nextest]);
        assert_eq!(needs(&manifest, Backend::Native, none, true), [Ruby, Nextest]);
        let without_ruby = s(&["ruby-worker"]);
        assert_eq!(needs(&manifest, Backend::Native, &without_ruby, false), [Postgres, Nextest]);
        // Containers carry their own programs.
        assert_eq!(needs(&manifest, Backend::Docker, none, false), [Nextest]);
    }
}
