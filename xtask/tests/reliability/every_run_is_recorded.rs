//! Every pipeline run, whatever its outcome, is a line of the run history that
//! `cargo xtask ci-report` reads.

use std::process::Command;

use crate::support::{Fixture, XTASK, fake_cargo, stderr};

#[test]
fn every_pipeline_run_is_recorded_and_reported() {
    let f = Fixture::new("history");
    f.two_services();
    let cargo = fake_cargo(&f, "exit 0");
    let out = f.xtask("s", &["ci-native"]).env("CARGO", &cargo).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    // A run whose service crashes at start.
    f.manifest(&f.fake("orchestration", "tasker-orchestration", &[("FAKE_CRASH", "1")], ""));
    let out = f.xtask("s", &["ci-native"]).env("CARGO", &cargo).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    // A mistake in the input is not a run.
    let out = f.xtask("s", &["ci-native", "--only-typo"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));

    let history = std::fs::read_to_string(f.dir.join("history.jsonl")).unwrap();
    let records: Vec<serde_json::Value> =
        history.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(records.len(), 2, "{history}");
    assert_eq!(records[0]["mode"], "native");
    assert_eq!(records[0]["outcome"], "passed");
    let phases: Vec<&str> = records[0]["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert!(phases.contains(&"database") && phases.contains(&"tests"), "{phases:?}");
    assert_eq!(records[1]["outcome"], "startup-failed");
    assert_eq!(records[1]["startup_failure"]["service"], "orchestration");

    let report = Command::new(XTASK)
        .args(["ci-report", "--output"])
        .arg(f.dir.join("report"))
        .env("TASKER_CI_HISTORY", f.dir.join("history.jsonl"))
        .env_remove("GITHUB_STEP_SUMMARY")
        .output()
        .unwrap();
    assert!(report.status.success(), "{}", stderr(&report));
    let text = String::from_utf8_lossy(&report.stdout);
    assert!(text.contains("| native | 2 | 50% |"), "{text}");
    let svg = std::fs::read_to_string(f.dir.join("report/runs.svg")).unwrap();
    // Both runs started a database; only the first reached its tests.
    assert_eq!(svg.matches("<title>native database:").count(), 2, "{svg}");
    assert_eq!(svg.matches("<title>native tests:").count(), 1, "{svg}");
    f.assert_nothing_left("s");
}
