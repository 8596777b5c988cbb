//! The run history: one JSON line per pipeline run (`ci-native`, `ci-docker`, `test`)
//! in `target/xtask/history.jsonl` (or `$TASKER_CI_HISTORY`): the mode, the commit, when,
//! each phase's duration, the outcome, every test's result from the JUnit report, a
//! start-up failure with the service that failed, and on GitHub Actions the workflow run
//! and shard it was part of. `cargo xtask ci-report` reads it: the records of one run's
//! shards merge into one run ([`runs`]), and an import keeps a bounded window
//! ([`keep_newest`]).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use crate::ci::junit;
use crate::github::WorkflowRun;
use crate::sys::{fs, paths};

/// Overrides where the history lives.
pub const HISTORY_VAR: &str = "TASKER_CI_HISTORY";

/// Bumped when a record's shape changes incompatibly. New optional fields (`shard`,
/// `workflow`) are not: older records read as local runs, older readers ignore them.
const FORMAT: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub format: u32,
    /// Unique per run (where, when, which process): merging imports skips duplicates.
    pub id: String,
    /// `native`, `docker` or `test`.
    pub mode: String,
    pub commit: Option<String>,
    /// Unix time the run started, in seconds.
    pub started_unix: f64,
    pub wall_seconds: f64,
    /// In the order they ran.
    pub phases: Vec<Phase>,
    /// `passed`, `failed` (tests failed), `startup-failed`, `interrupted` or `error`.
    pub outcome: String,
    pub tests: Vec<TestResult>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub startup_failure: Option<StartupFailure>,
    /// The shard of the tests it ran (`--partition`, e.g. `hash:1/2`), when sharded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,
    /// The GitHub Actions workflow run it was part of; none for a local run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workflow: Option<WorkflowRun>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Phase {
    pub name: String,
    pub seconds: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestResult {
    pub name: String,
    /// `passed`, `failed` or `skipped`.
    pub outcome: String,
    pub seconds: f64,
    /// Failed at first, passed on a retry.
    pub flaky: bool,
    pub retried: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StartupFailure {
    /// The service that failed, when one did (not a timeout of several).
    pub service: Option<String>,
    pub message: String,
}

impl From<&junit::Case> for TestResult {
    fn from(case: &junit::Case) -> TestResult {
        TestResult {
            name: case.name.clone(),
            outcome: case.outcome.name().to_string(),
            seconds: case.seconds,
            flaky: case.flaky,
            retried: case.retried,
        }
    }
}

/// Where the history is: `$TASKER_CI_HISTORY`, else `target/xtask/history.jsonl`.
pub fn default_path() -> PathBuf {
    match std::env::var_os(HISTORY_VAR).filter(|v| !v.is_empty()) {
        Some(path) => PathBuf::from(path),
        None => paths::xtask_dir().join("history.jsonl"),
    }
}

/// A new record's id: the machine (or CI runner), the start time and this process.
pub fn new_id(started_unix: f64) -> String {
    let host = std::env::var("RUNNER_NAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .unwrap_or_default();
    format!("{}-{:.6}-{}", host.trim(), started_unix, std::process::id())
}

/// The commit checked out, if git knows it.
pub fn commit() -> Option<String> {
    let out = std::process::Command::new("git")
        .current_dir(paths::root())
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()?;
    let commit = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !commit.is_empty()).then_some(commit)
}

/// Appends `record` as one line.
pub fn append(path: &Path, record: &Record) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut file = open_locked(path)?;
    // One write of one line, under the lock that a rewriting import holds too.
    file.write_all((serde_json::to_string(record)? + "\n").as_bytes())?;
    Ok(())
}

/// Replaces the history with what `change` makes of its current text, atomically and
/// under its lock: a pipeline that appends meanwhile waits, then appends to the new file.
pub fn rewrite(
    path: &Path,
    change: impl FnOnce(&str) -> anyhow::Result<String>,
) -> anyhow::Result<()> {
    use std::io::Read as _;
    let mut file = open_locked(path)?;
    let mut text = String::new();
    if let Err(err) = file.read_to_string(&mut text) {
        crate::user_error!("cannot read {}: {err}", paths::display_path(path));
    }
    fs::write_atomic(path, change(&text)?)
    // The lock goes with `file`, after the new file is in place.
}

/// The history opened for appending (and reading), locked against every other writer.
/// The lock is the file's own: after a rewrite replaced the file, a writer that waited
/// holds the lock of the old one, and opens the path again.
fn open_locked(path: &Path) -> anyhow::Result<std::fs::File> {
    use std::os::unix::fs::MetadataExt as _;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    loop {
        let opened = std::fs::OpenOptions::new().read(true).append(true).create(true).open(path);
        let file = match opened {
            Ok(file) => file,
            Err(err) => crate::user_error!("cannot open {}: {err}", paths::display_path(path)),
        };
        file.lock().with_context(|| format!("locking {}", paths::display_path(path)))?;
        let (held, named) = (file.metadata()?, std::fs::metadata(path));
        if named.is_ok_and(|named| (named.dev(), named.ino()) == (held.dev(), held.ino())) {
            return Ok(file);
        }
    }
}

/// The records of a history text; lines that do not parse are skipped, each with a
/// warning naming the file and line.
pub fn parse(text: &str, source: &str) -> (Vec<Record>, Vec<String>) {
    let mut records = Vec::new();
    let mut warnings = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Record>(line) {
            Ok(record) if record.format == FORMAT => records.push(record),
            Ok(record) => warnings.push(format!(
                "{source}:{}: skipped a record of format {} (this xtask reads {FORMAT})",
                i + 1,
                record.format
            )),
            Err(err) => {
                warnings.push(format!("{source}:{}: skipped a malformed record: {err}", i + 1))
            }
        }
    }
    (records, warnings)
}

/// Adds the records of `more` that `into` does not have yet (by id); returns how many.
pub fn merge(into: &mut Vec<Record>, more: Vec<Record>) -> usize {
    let mut added = 0;
    for record in more {
        if !into.iter().any(|r| r.id == record.id) {
            into.push(record);
            added += 1;
        }
    }
    into.sort_by(|a, b| a.started_unix.total_cmp(&b.started_unix));
    added
}

/// A record as the pipeline makes it (pure: the caller passes what it measured).
pub struct Run<'a> {
    pub mode: &'a str,
    pub started_unix: f64,
    pub wall_seconds: f64,
    pub phases: &'a [(&'static str, std::time::Duration)],
    pub outcome: &'a str,
    pub cases: &'a [junit::Case],
    pub startup_failure: Option<StartupFailure>,
    pub commit: Option<String>,
    /// `--partition`, when the run was one shard of the tests.
    pub shard: Option<&'a str>,
    /// [`WorkflowRun::current`] (the caller reads it: this stays pure).
    pub workflow: Option<WorkflowRun>,
}

impl Run<'_> {
    pub fn record(&self) -> Record {
        Record {
            format: FORMAT,
            id: new_id(self.started_unix),
            mode: self.mode.to_string(),
            commit: self.commit.clone(),
            started_unix: self.started_unix,
            wall_seconds: self.wall_seconds,
            phases: self
                .phases
                .iter()
                .map(|(name, took)| Phase { name: name.to_string(), seconds: took.as_secs_f64() })
                .collect(),
            outcome: self.outcome.to_string(),
            tests: self.cases.iter().map(TestResult::from).collect(),
            startup_failure: self.startup_failure.clone(),
            shard: self.shard.map(str::to_string),
            workflow: self.workflow.clone(),
        }
    }
}

/// One run as `ci-report` counts it: the records of one mode of one attempt of a
/// workflow run (its shards) merged, or a local record alone.
#[derive(Debug, Clone, PartialEq)]
pub struct MergedRun {
    pub mode: String,
    /// The workflow run's id and attempt; none for a local run.
    pub workflow: Option<(u64, u32)>,
    /// The event that started the workflow run; `local` for a local run.
    pub event: String,
    pub pull_request: Option<u64>,
    /// When its first shard started.
    pub started_unix: f64,
    /// From its first shard's start to its last shard's end.
    pub wall_seconds: f64,
    /// The worst of its shards' (see [`severity`]).
    pub outcome: String,
    /// A shard's services did not start.
    pub startup_failure: bool,
    /// How many records it merges.
    pub records: usize,
    /// Every shard of its partition is here (a re-run of the failed shards alone is not).
    pub complete: bool,
    /// The phases of the shard that ended last: the run's critical path.
    pub phases: Vec<Phase>,
    /// Each test once, whichever shard ran it.
    pub tests: Vec<TestResult>,
}

/// How bad an outcome is, for the worst of a run's shards. An interruption (a cancelled
/// run, a job timeout) ranks highest: the run as a whole did not finish. An outcome this
/// xtask does not know counts as an error.
pub fn severity(outcome: &str) -> u8 {
    match outcome {
        "passed" => 0,
        "failed" => 1,
        "startup-failed" => 2,
        "interrupted" => 4,
        _ => 3,
    }
}

/// What a record counts toward (see [`MergedRun`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum RunKey<'a> {
    Workflow { run_id: u64, attempt: u32, mode: &'a str },
    Local(&'a str),
}

fn run_key(record: &Record) -> RunKey<'_> {
    match &record.workflow {
        Some(w) => RunKey::Workflow { run_id: w.run_id, attempt: w.attempt, mode: &record.mode },
        None => RunKey::Local(&record.id),
    }
}

/// `hash:M/N` (any kind) as (M, N).
fn shard_of(partition: &str) -> Option<(u32, u32)> {
    let (_, shard) = partition.split_once(':')?;
    let (m, n) = shard.split_once('/')?;
    Some((m.parse().ok()?, n.parse().ok()?))
}

/// The runs of `records`, oldest first: shard records merged per mode and attempt of
/// their workflow run (a run with both modes is two runs, one per mode; each re-run
/// attempt is a run of its own), local records one run each.
pub fn runs(records: &[Record]) -> Vec<MergedRun> {
    let mut groups: Vec<Vec<&Record>> = Vec::new();
    let mut index: HashMap<RunKey, usize> = HashMap::new();
    for record in records {
        let slot = *index.entry(run_key(record)).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[slot].push(record);
    }
    let mut runs: Vec<MergedRun> = groups.into_iter().map(|group| merge_shards(&group)).collect();
    runs.sort_by(|a, b| a.started_unix.total_cmp(&b.started_unix));
    runs
}

/// One run from its records (at least one).
fn merge_shards(shards: &[&Record]) -> MergedRun {
    let first = shards[0];
    let end = |r: &Record| r.started_unix + r.wall_seconds;
    let started = shards.iter().map(|r| r.started_unix).fold(f64::INFINITY, f64::min);
    let last = shards.iter().copied().max_by(|a, b| end(a).total_cmp(&end(b))).unwrap_or(first);
    let worst = shards.iter().map(|r| r.outcome.as_str()).max_by_key(|o| severity(o));
    let parts: Vec<Option<(u32, u32)>> =
        shards.iter().map(|r| r.shard.as_deref().and_then(shard_of)).collect();
    let complete = match parts.iter().flatten().map(|&(_, of)| of).next() {
        None => true,
        Some(n) => {
            let covered: HashSet<u32> =
                parts.iter().flatten().filter(|(_, of)| *of == n).map(|&(m, _)| m).collect();
            parts.iter().all(Option::is_some) && (1..=n).all(|m| covered.contains(&m))
        }
    };
    let mut tests: Vec<TestResult> = Vec::new();
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for test in shards.iter().flat_map(|r| &r.tests) {
        match seen.get(test.name.as_str()) {
            Some(&i) => tests[i] = merge_test(&tests[i], test),
            None => {
                seen.insert(&test.name, tests.len());
                tests.push(test.clone());
            }
        }
    }
    MergedRun {
        mode: first.mode.clone(),
        workflow: first.workflow.as_ref().map(|w| (w.run_id, w.attempt)),
        event: first.workflow.as_ref().map_or("local".into(), |w| w.event.clone()),
        pull_request: first.workflow.as_ref().and_then(|w| w.pull_request),
        started_unix: started,
        wall_seconds: shards.iter().map(|r| end(r)).fold(started, f64::max) - started,
        outcome: worst.unwrap_or(&first.outcome).to_string(),
        startup_failure: shards.iter().any(|r| r.startup_failure.is_some()),
        records: shards.len(),
        complete,
        phases: last.phases.clone(),
        tests,
    }
}

/// A test two shards of one run both report: the one that ran beats a skip, a failure
/// beats a pass; flaky or retried in either is flaky or retried.
fn merge_test(a: &TestResult, b: &TestResult) -> TestResult {
    let rank = |t: &TestResult| match t.outcome.as_str() {
        "skipped" => 0,
        "passed" => 1,
        _ => 2,
    };
    let mut merged = if rank(b) > rank(a) { b.clone() } else { a.clone() };
    merged.seconds = a.seconds.max(b.seconds);
    merged.flaky = a.flaky || b.flaky;
    merged.retried = a.retried || b.retried;
    merged
}

/// The newest runs an import keeps by default (`ci-report --keep-runs`).
pub const KEEP_RUNS: usize = 500;

/// Drops the records of all but the newest `keep` runs (newest by their first record's
/// start); returns how many records went. Here a run is a whole workflow run, every
/// attempt, mode and shard of it kept or dropped together, or a local record.
pub fn keep_newest(records: &mut Vec<Record>, keep: usize) -> usize {
    let key = |r: &Record| match &r.workflow {
        Some(w) => (Some(w.run_id), String::new()),
        None => (None, r.id.clone()),
    };
    let mut starts: HashMap<(Option<u64>, String), f64> = HashMap::new();
    for record in records.iter() {
        let start = starts.entry(key(record)).or_insert(record.started_unix);
        *start = start.min(record.started_unix);
    }
    if starts.len() <= keep {
        return 0;
    }
    let mut newest: Vec<(&(Option<u64>, String), &f64)> = starts.iter().collect();
    newest.sort_by(|a, b| b.1.total_cmp(a.1).then_with(|| b.0.cmp(a.0)));
    let kept: HashSet<&(Option<u64>, String)> =
        newest.into_iter().take(keep).map(|(k, _)| k).collect();
    let before = records.len();
    records.retain(|r| kept.contains(&key(r)));
    before - records.len()
}

/// Records as the pipelines write them, for the tests of the history and the report.
#[cfg(test)]
pub mod fixtures {
    use super::*;

    /// One pipeline run: a shard of a workflow run when `run` is set (its id and
    /// attempt), a local run otherwise.
    pub struct Shard<'a> {
        pub run: Option<(u64, u32)>,
        pub event: &'a str,
        pub pull_request: Option<u64>,
        pub mode: &'a str,
        pub partition: Option<&'a str>,
        pub started: f64,
        pub wall: f64,
        pub outcome: &'a str,
        /// Test name, outcome, seconds, flaky.
        pub tests: &'a [(&'a str, junit::Outcome, f64, bool)],
    }

    /// A line as xtask wrote it before records knew their workflow run and shard.
    pub const FORMAT_1_LINE: &str = r#"{"format":1,"id":"runnervm-1764550000.120000-4242","mode":"native","commit":"9f2c4e1a0b3d","started_unix":1764550000.12,"wall_seconds":4.02,"phases":[{"name":"build","seconds":1.27},{"name":"database","seconds":0.71}],"outcome":"passed","tests":[{"name":"tasker-core::e2e_rust_worker::linear_workflow_squares_four_times","outcome":"passed","seconds":0.09,"flaky":false,"retried":false}]}"#;

    pub const LOCAL: Shard<'static> = Shard {
        run: None,
        event: "",
        pull_request: None,
        mode: "native",
        partition: None,
        started: 0.0,
        wall: 1.0,
        outcome: "passed",
        tests: &[],
    };

    impl Shard<'_> {
        /// The record the pipeline's writer makes, its workflow run read from GitHub's
        /// variables as a job there has them.
        pub fn record(&self) -> Record {
            let workflow = self.run.and_then(|(id, attempt)| {
                let git_ref = match self.pull_request {
                    Some(number) => format!("refs/pull/{number}/merge"),
                    None => "refs/heads/main".to_string(),
                };
                let vars = [
                    ("GITHUB_ACTIONS", "true".to_string()),
                    ("GITHUB_RUN_ID", id.to_string()),
                    ("GITHUB_RUN_ATTEMPT", attempt.to_string()),
                    ("GITHUB_EVENT_NAME", self.event.to_string()),
                    ("GITHUB_JOB", self.mode.to_string()),
                    ("GITHUB_REF", git_ref),
                ];
                WorkflowRun::from_vars(|key| {
                    vars.iter().find(|(k, _)| *k == key).map(|(_, v)| v.clone())
                })
            });
            let cases: Vec<junit::Case> = self
                .tests
                .iter()
                .map(|&(name, outcome, seconds, flaky)| junit::Case {
                    name: name.to_string(),
                    outcome,
                    seconds,
                    flaky,
                    retried: flaky || outcome == junit::Outcome::Failed,
                })
                .collect();
            let mut record = Run {
                mode: self.mode,
                started_unix: self.started,
                wall_seconds: self.wall,
                phases: &[
                    ("build", std::time::Duration::from_secs_f64(self.wall * 0.5)),
                    ("tests", std::time::Duration::from_secs_f64(self.wall * 0.4)),
                ],
                outcome: self.outcome,
                cases: &cases,
                startup_failure: (self.outcome == "startup-failed").then(|| StartupFailure {
                    service: Some("orchestration".into()),
                    message: "orchestration exited with status 1".into(),
                }),
                commit: Some("9f2c4e1a0b3d".into()),
                shard: self.partition,
                workflow,
            }
            .record();
            // Ids differ by process and start time; shards of one test process need their own.
            record.id = format!(
                "{}-{}-{}-{}",
                record.id,
                self.mode,
                self.run.map_or(0, |(_, attempt)| attempt),
                self.partition.unwrap_or("")
            );
            record
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{FORMAT_1_LINE, LOCAL, Shard};
    use super::*;
    use crate::ci::junit::Outcome::{Failed, Passed, Skipped};

    fn record(id: &str, started: f64) -> Record {
        let mut record =
            Shard { started, wall: 3.5, tests: &[("p::b::t", Passed, 0.2, true)], ..LOCAL }
                .record();
        record.id = id.to_string();
        record
    }

    #[test]
    fn records_round_trip_and_bad_lines_are_skipped_with_their_line() {
        let a = record("a", 10.0);
        let text = format!(
            "{}\n{{\"format\": 1, \"id\": \"trunc\n\n{}\n{}\n",
            serde_json::to_string(&a).unwrap(),
            serde_json::to_string(&Record { format: 9, ..record("future", 11.0) }).unwrap(),
            serde_json::to_string(&record("b", 12.0)).unwrap(),
        );
        let (records, warnings) = parse(&text, "history.jsonl");
        assert_eq!(records.len(), 2);
        assert_eq!(records[0], a);
        assert_eq!(records[0].phases[0], Phase { name: "build".into(), seconds: 1.75 });
        assert!(records[0].tests[0].flaky);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(
            warnings[0].starts_with("history.jsonl:2: skipped a malformed record"),
            "{warnings:?}"
        );
        assert!(
            warnings[1].starts_with("history.jsonl:4: skipped a record of format 9"),
            "{warnings:?}"
        );
    }

    #[test]
    fn a_record_written_before_workflow_runs_were_recorded_is_a_local_run() {
        let (records, warnings) = parse(FORMAT_1_LINE, "old.jsonl");
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!((records[0].workflow.as_ref(), records[0].shard.as_ref()), (None, None));
        let runs = runs(&records);
        assert_eq!(runs.len(), 1);
        assert_eq!(
            (runs[0].event.as_str(), runs[0].workflow, runs[0].complete),
            ("local", None, true)
        );
        // And a new record's extra fields are ones an older reader ignores: no new format.
        let new = Shard { run: Some((5, 1)), event: "push", partition: Some("hash:1/2"), ..LOCAL };
        let line = serde_json::to_string(&new.record()).unwrap();
        assert!(line.starts_with(r#"{"format":1,"#), "{line}");
        assert!(
            line.contains(
                r#""shard":"hash:1/2","workflow":{"run_id":5,"attempt":1,"event":"push""#
            ),
            "{line}"
        );
    }

    fn shard<'a>(
        run: (u64, u32),
        mode: &'a str,
        partition: &'a str,
        started: f64,
        wall: f64,
        outcome: &'a str,
    ) -> Shard<'a> {
        Shard {
            run: Some(run),
            event: "pull_request",
            pull_request: Some(41),
            mode,
            partition: Some(partition),
            started,
            wall,
            outcome,
            tests: &[],
        }
    }

    #[test]
    fn the_shards_of_an_attempt_are_one_run_per_mode_and_a_re_run_is_a_run_of_its_own() {
        let records = vec![
            // Run 100, attempt 1, parallel validation: two native and two Docker shards
            // (shard 2 of native failed) and the unit-test job.
            shard((100, 1), "native", "hash:1/2", 1000.0, 300.0, "passed").record(),
            shard((100, 1), "native", "hash:2/2", 1010.0, 320.0, "failed").record(),
            shard((100, 1), "docker", "hash:1/2", 1005.0, 600.0, "passed").record(),
            shard((100, 1), "docker", "hash:2/2", 1003.0, 610.0, "startup-failed").record(),
            Shard {
                partition: None,
                mode: "test",
                ..shard((100, 1), "", "", 900.0, 200.0, "passed")
            }
            .record(),
            // Attempt 2 re-ran the failed native shard only.
            shard((100, 2), "native", "hash:2/2", 5000.0, 310.0, "passed").record(),
            // A local run in between.
            Shard { started: 3000.0, wall: 50.0, ..LOCAL }.record(),
        ];
        let runs = runs(&records);
        let seen: Vec<String> = runs
            .iter()
            .map(|r| {
                let run = r.workflow.map_or("local".into(), |(id, n)| format!("{id}#{n}"));
                let complete = if r.complete { "complete" } else { "partial" };
                format!("{run} {} x{} {} {complete}", r.mode, r.records, r.outcome)
            })
            .collect();
        assert_eq!(
            seen,
            [
                "100#1 test x1 passed complete",
                "100#1 native x2 failed complete",
                "100#1 docker x2 startup-failed complete",
                "local native x1 passed complete",
                "100#2 native x1 passed partial",
            ]
        );
        // Whole-run wall time: the first shard's start to the last shard's end.
        assert_eq!((runs[1].started_unix, runs[1].wall_seconds), (1000.0, 330.0));
        assert_eq!((runs[2].started_unix, runs[2].wall_seconds), (1003.0, 610.0));
        assert!(runs[2].startup_failure && !runs[1].startup_failure);
        assert_eq!((runs[1].event.as_str(), runs[1].pull_request), ("pull_request", Some(41)));
        // The critical path: the phases of the shard that ended last.
        assert_eq!(runs[1].phases[0], Phase { name: "build".into(), seconds: 160.0 });
    }

    #[test]
    fn the_worst_shard_decides_and_an_interruption_outranks_a_failure() {
        let outcomes = |a: &str, b: &str| {
            let records = [
                shard((1, 1), "native", "hash:1/2", 0.0, 1.0, a).record(),
                shard((1, 1), "native", "hash:2/2", 0.0, 1.0, b).record(),
            ];
            runs(&records)[0].outcome.clone()
        };
        assert_eq!(outcomes("passed", "passed"), "passed");
        assert_eq!(outcomes("failed", "passed"), "failed");
        assert_eq!(outcomes("failed", "startup-failed"), "startup-failed");
        assert_eq!(outcomes("error", "startup-failed"), "error");
        assert_eq!(outcomes("interrupted", "failed"), "interrupted");
        assert_eq!(outcomes("passed", "something-new"), "something-new");
    }

    #[test]
    fn a_run_missing_a_shard_or_with_a_stray_one_is_not_complete() {
        let complete = |partitions: &[&str]| {
            let records: Vec<Record> = partitions
                .iter()
                .map(|p| shard((9, 1), "native", p, 0.0, 1.0, "passed").record())
                .collect();
            runs(&records)[0].complete
        };
        assert!(complete(&["hash:1/3", "hash:3/3", "hash:2/3"]));
        assert!(!complete(&["hash:1/3", "hash:3/3"]));
        assert!(!complete(&["hash:1/2", "hash:2/2", "oops"]));
        assert!(complete(&["count:1/1"]));
    }

    #[test]
    fn a_test_two_shards_report_is_one_test_that_ran() {
        let one = Shard {
            tests: &[("t::a", Passed, 1.0, false), ("t::b", Skipped, 0.0, false)],
            ..shard((3, 1), "native", "hash:1/2", 0.0, 5.0, "failed")
        };
        let two = Shard {
            tests: &[("t::b", Failed, 2.0, false), ("t::a", Passed, 1.5, true)],
            ..shard((3, 1), "native", "hash:2/2", 0.0, 5.0, "failed")
        };
        let runs = runs(&[one.record(), two.record()]);
        let tests: Vec<(&str, &str, f64, bool)> = runs[0]
            .tests
            .iter()
            .map(|t| (t.name.as_str(), t.outcome.as_str(), t.seconds, t.flaky))
            .collect();
        assert_eq!(tests, [("t::a", "passed", 1.5, true), ("t::b", "failed", 2.0, false)]);
    }

    #[test]
    fn the_window_keeps_the_newest_workflow_runs_with_every_attempt_and_shard() {
        let mut records = vec![
            shard((1, 1), "native", "hash:1/2", 100.0, 1.0, "passed").record(),
            shard((1, 1), "native", "hash:2/2", 101.0, 1.0, "passed").record(),
            Shard { started: 150.0, ..LOCAL }.record(),
            shard((2, 1), "native", "hash:1/2", 200.0, 1.0, "failed").record(),
            shard((2, 1), "docker", "hash:1/2", 202.0, 1.0, "passed").record(),
            // Run 2's re-run, much later: still run 2, kept with it.
            shard((2, 2), "native", "hash:1/2", 900.0, 1.0, "passed").record(),
            shard((3, 1), "native", "hash:1/2", 300.0, 1.0, "passed").record(),
        ];
        assert_eq!(keep_newest(&mut records, 4), 0, "four runs: nothing to drop");
        assert_eq!(keep_newest(&mut records, 2), 3);
        let left: Vec<(u64, u32)> = records
            .iter()
            .map(|r| r.workflow.as_ref().map_or((0, 0), |w| (w.run_id, w.attempt)))
            .collect();
        assert_eq!(left, [(2, 1), (2, 1), (2, 2), (3, 1)]);
        // Newest by its first start: run 2 began before run 3, however late its re-run.
        assert_eq!(keep_newest(&mut records, 1), 3);
        assert_eq!(records[0].workflow.as_ref().unwrap().run_id, 3);
    }

    #[test]
    fn merging_skips_records_already_there_and_keeps_time_order() {
        let mut history = vec![record("a", 10.0), record("c", 30.0)];
        let added = merge(&mut history, vec![record("b", 20.0), record("a", 10.0)]);
        assert_eq!(added, 1);
        let ids: Vec<&str> = history.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "c"]);
    }

    #[test]
    fn appending_adds_one_line_per_run() {
        let dir = std::env::temp_dir().join(format!("xtask-history-{}", std::process::id()));
        let path = dir.join("history.jsonl");
        append(&path, &record("a", 1.0)).unwrap();
        append(&path, &record("b", 2.0)).unwrap();
        let (records, warnings) = parse(&std::fs::read_to_string(&path).unwrap(), "h");
        assert_eq!((records.len(), warnings.len()), (2, 0));
        std::fs::remove_dir_all(dir).unwrap();
    }

    /// Whether a process waits for a lock on the file with inode `ino` (`/proc/locks`
    /// lists a waiter as `N: -> FLOCK ... <major>:<minor>:<inode> ...`).
    fn someone_waits_for_lock_on(ino: u64) -> bool {
        let locks = std::fs::read_to_string("/proc/locks").expect("reading /proc/locks");
        locks.lines().any(|line| {
            line.contains("->")
                && line.split_whitespace().any(|f| f.rsplit(':').next() == Some(&ino.to_string()))
        })
    }

    #[test]
    fn an_append_waiting_for_a_rewrite_lands_in_the_new_file() {
        use std::os::unix::fs::MetadataExt as _;
        let dir =
            std::env::temp_dir().join(format!("xtask-history-rewrite-{}", std::process::id()));
        let path = dir.join("history.jsonl");
        append(&path, &record("old", 1.0)).unwrap();
        let old_ino = std::fs::metadata(&path).unwrap().ino();
        let (entered_tx, entered_rx) = std::sync::mpsc::channel();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let path = &path;
        std::thread::scope(|scope| {
            let rewriting = scope.spawn(move || {
                rewrite(path, |text| {
                    entered_tx.send(()).unwrap();
                    // Hold the lock until the appender waits for it.
                    go_rx.recv().unwrap();
                    Ok(text.replace("\"old\"", "\"rewritten\""))
                })
            });
            entered_rx.recv().unwrap();
            let appending = scope.spawn(|| append(path, &record("new", 2.0)));
            while !someone_waits_for_lock_on(old_ino) {
                assert!(!appending.is_finished(), "appended while a rewrite held the lock");
                std::thread::yield_now();
            }
            go_tx.send(()).unwrap();
            rewriting.join().unwrap().unwrap();
            appending.join().unwrap().unwrap();
        });
        let (records, _) = parse(&std::fs::read_to_string(path).unwrap(), "h");
        let ids: Vec<&str> = records.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["rewritten", "new"], "the append went to the replaced file");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
