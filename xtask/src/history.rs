//! The run history: one JSON line per pipeline run (`ci-native`, `ci-docker`, `test`)
//! in `target/xtask/history.jsonl` (or `$TASKER_CI_HISTORY`): the mode, the commit, when,
//! each phase's duration, the outcome, every test's result from the JUnit report, and a
//! start-up failure with the service that failed. `cargo xtask ci-report` reads it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::junit;
use crate::project;

/// Overrides where the history lives.
pub const HISTORY_VAR: &str = "TASKER_CI_HISTORY";

/// Bumped when a record's shape changes incompatibly.
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
        None => project::xtask_dir().join("history.jsonl"),
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
        .current_dir(project::root())
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()?;
    let commit = String::from_utf8_lossy(&out.stdout).trim().to_string();
    (out.status.success() && !commit.is_empty()).then_some(commit)
}

/// Appends `record` as one line.
pub fn append(path: &Path, record: &Record) -> anyhow::Result<()> {
    use std::io::Write as _;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    // One write of one line: concurrent appenders never interleave within a line.
    file.write_all((serde_json::to_string(record)? + "\n").as_bytes())?;
    Ok(())
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
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, started: f64) -> Record {
        Run {
            mode: "native",
            started_unix: started,
            wall_seconds: 3.5,
            phases: &[("build", std::time::Duration::from_millis(1500))],
            outcome: "passed",
            cases: &[junit::Case {
                name: "p::b::t".into(),
                outcome: junit::Outcome::Passed,
                seconds: 0.2,
                flaky: true,
                retried: true,
            }],
            startup_failure: None,
            commit: Some("abc".into()),
        }
        .record()
        .with_id(id)
    }

    impl Record {
        fn with_id(mut self, id: &str) -> Record {
            self.id = id.to_string();
            self
        }
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
        assert_eq!(records[0].phases[0], Phase { name: "build".into(), seconds: 1.5 });
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
}
