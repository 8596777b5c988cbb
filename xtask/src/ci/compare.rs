//! `cargo xtask ci-compare NATIVE.xml DOCKER.xml`: do both modes agree? Compares the
//! JUnit results of a native and a Docker run test by test and lists every test whose
//! outcome differs or that ran in one mode only. Parsing and comparing are pure; the
//! task reads the files and writes the report (and the step summary on GitHub).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::github;
use crate::sys::error::{Exit, UserError};
use crate::sys::paths;

#[derive(clap::Args)]
#[command(after_help = "\
Exit 0 when every test has the same outcome in both files, 1 when any differs or ran in
one mode only (each is listed), 2 when a file cannot be read or is not JUnit XML.

Examples:
  cargo xtask ci-compare native/junit.xml docker/junit.xml
  cargo xtask ci-compare junit/native junit/docker        every shard's file, merged")]
pub struct Args {
    /// JUnit XML of the native run (nextest: target/nextest/ci/junit.xml), or a directory
    /// of them (the shards of one run: every .xml below it, merged)
    native: PathBuf,
    /// JUnit XML of the Docker run, or a directory of them
    docker: PathBuf,
}

use crate::ci::junit::Outcome;

/// Each test case (`classname::name`) of a JUnit report and its outcome.
pub fn parse_junit(xml: &str) -> Result<BTreeMap<String, Outcome>, String> {
    Ok(crate::ci::junit::parse(xml)?.into_iter().map(|case| (case.name, case.outcome)).collect())
}

/// One test on which the modes disagree.
#[derive(Debug, PartialEq, Eq)]
pub struct Difference {
    pub test: String,
    pub native: Option<Outcome>,
    pub docker: Option<Outcome>,
}

pub fn compare(
    native: &BTreeMap<String, Outcome>,
    docker: &BTreeMap<String, Outcome>,
) -> Vec<Difference> {
    let mut names: Vec<&String> = native.keys().chain(docker.keys()).collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .filter(|name| native.get(*name) != docker.get(*name))
        .map(|name| Difference {
            test: name.clone(),
            native: native.get(name).copied(),
            docker: docker.get(name).copied(),
        })
        .collect()
}

fn shown(outcome: Option<Outcome>) -> &'static str {
    outcome.map(Outcome::name).unwrap_or("did not run")
}

/// The report as markdown (for the step summary) and its one-line verdict.
pub fn report(tests: usize, differences: &[Difference]) -> (String, String) {
    let verdict = match differences.len() {
        0 => format!("native and Docker agree on all {tests} test(s)"),
        n => format!("native and Docker disagree on {n} of {tests} test(s)"),
    };
    let mut markdown = format!("### Native against Docker\n\n{verdict}.\n");
    if !differences.is_empty() {
        markdown.push_str("\n| test | native | docker |\n|---|---|---|\n");
        for d in differences {
            markdown.push_str(&format!(
                "| `{}` | {} | {} |\n",
                d.test,
                shown(d.native),
                shown(d.docker)
            ));
        }
    }
    markdown.push('\n');
    (markdown, verdict)
}

/// The .xml files of `path`: itself, or every one below it when it is a directory.
fn junit_files(path: &Path) -> Vec<PathBuf> {
    if path.is_dir() { crate::sys::fs::files_below(path, "xml") } else { vec![path.to_path_buf()] }
}

/// The merged results of a file or a directory of shards; a test failing in any wins.
fn read_results(path: &Path) -> Result<BTreeMap<String, Outcome>, UserError> {
    let files = junit_files(path);
    if files.is_empty() {
        return Err(UserError(format!("no JUnit .xml file in {}", paths::display_path(path))));
    }
    let mut merged: BTreeMap<String, Outcome> = BTreeMap::new();
    for file in files {
        let text = std::fs::read_to_string(&file)
            .map_err(|e| UserError(format!("cannot read {}: {e}", paths::display_path(&file))))?;
        let tests = parse_junit(&text)
            .map_err(|e| UserError(format!("{}: {e}", paths::display_path(&file))))?;
        for (name, outcome) in tests {
            let slot = merged.entry(name).or_insert(outcome);
            if outcome == Outcome::Failed {
                *slot = Outcome::Failed;
            }
        }
    }
    Ok(merged)
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let read = |path: &PathBuf| read_results(path);
    let native = read(&args.native)?;
    let docker = read(&args.docker)?;
    let differences = compare(&native, &docker);
    let tests = native.keys().chain(docker.keys()).collect::<std::collections::BTreeSet<_>>().len();
    let (markdown, verdict) = report(tests, &differences);
    for d in &differences {
        println!("{:<70} native: {:<11} docker: {}", d.test, shown(d.native), shown(d.docker));
    }
    println!("{verdict}");
    github::step_summary(&markdown)?;
    if !differences.is_empty() {
        github::error(&verdict);
        return Err(Exit(1).into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape nextest writes.
    const NATIVE: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<testsuites name="nextest-run" tests="4" failures="1" errors="0" uuid="u" timestamp="t" time="2.0">
    <testsuite name="tasker-core::e2e_rust_worker" tests="3" disabled="0" errors="0" failures="1">
        <testcase name="linear_workflow_squares_four_times" classname="tasker-core::e2e_rust_worker" timestamp="t" time="0.1">
        </testcase>
        <testcase name="retry_&quot;gives_up&quot;" classname="tasker-core::e2e_rust_worker" timestamp="t" time="0.5">
            <failure message="assertion failed" type="test failure">thread panicked &lt;here&gt;</failure>
            <system-out></system-out>
        </testcase>
        <testcase name="only_native" classname="tasker-core::e2e_rust_worker" time="0.0"/>
    </testsuite>
    <testsuite name="tasker-core::e2e_ruby_worker" tests="1">
        <testcase name="ruby_health" classname="tasker-core::e2e_ruby_worker" time="0.0"><skipped/></testcase>
    </testsuite>
</testsuites>"#;

    const DOCKER: &str = r#"<testsuites><testsuite name="tasker-core::e2e_rust_worker">
        <testcase classname="tasker-core::e2e_rust_worker" name="linear_workflow_squares_four_times" time="0.1"></testcase>
        <testcase classname="tasker-core::e2e_rust_worker" name='retry_"gives_up"' time="0.5"></testcase>
        <testcase classname="tasker-core::e2e_rust_worker" name="only_docker"></testcase>
    </testsuite><testsuite name="tasker-core::e2e_ruby_worker">
        <testcase classname="tasker-core::e2e_ruby_worker" name="ruby_health"><skipped message="x"/></testcase>
    </testsuite></testsuites>"#;

    #[test]
    fn outcomes_are_read_from_nextest_junit() {
        let tests = parse_junit(NATIVE).unwrap();
        assert_eq!(tests.len(), 4);
        assert_eq!(
            tests["tasker-core::e2e_rust_worker::linear_workflow_squares_four_times"],
            Outcome::Passed
        );
        assert_eq!(tests["tasker-core::e2e_rust_worker::retry_\"gives_up\""], Outcome::Failed);
        assert_eq!(tests["tasker-core::e2e_rust_worker::only_native"], Outcome::Passed);
        assert_eq!(tests["tasker-core::e2e_ruby_worker::ruby_health"], Outcome::Skipped);
    }

    #[test]
    fn differences_and_one_sided_tests_are_listed() {
        let differences = compare(&parse_junit(NATIVE).unwrap(), &parse_junit(DOCKER).unwrap());
        let listed: Vec<(&str, &str, &str)> = differences
            .iter()
            .map(|d| (d.test.as_str(), shown(d.native), shown(d.docker)))
            .collect();
        assert_eq!(
            listed,
            vec![
                ("tasker-core::e2e_rust_worker::only_docker", "did not run", "passed"),
                ("tasker-core::e2e_rust_worker::only_native", "passed", "did not run"),
                ("tasker-core::e2e_rust_worker::retry_\"gives_up\"", "failed", "passed"),
            ]
        );
        let (markdown, verdict) = report(5, &differences);
        assert_eq!(verdict, "native and Docker disagree on 3 of 5 test(s)");
        assert!(
            markdown
                .contains("| `tasker-core::e2e_rust_worker::only_docker` | did not run | passed |")
        );
    }

    #[test]
    fn identical_runs_agree() {
        let native = parse_junit(NATIVE).unwrap();
        assert!(compare(&native, &native).is_empty());
        assert_eq!(report(4, &[]).1, "native and Docker agree on all 4 test(s)");
    }

    #[test]
    fn shards_in_a_directory_are_merged() {
        let dir = std::env::temp_dir().join(format!("xtask-junit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("junit-native-1")).unwrap();
        std::fs::create_dir_all(dir.join("junit-native-2")).unwrap();
        let case = |name: &str, body: &str| {
            format!(
                "<testsuites><testsuite name=\"s\"><testcase classname=\"c\" name=\"{name}\">{body}</testcase></testsuite></testsuites>"
            )
        };
        std::fs::write(dir.join("junit-native-1/junit.xml"), case("a", "")).unwrap();
        std::fs::write(dir.join("junit-native-2/junit.xml"), case("b", "<failure/>")).unwrap();
        let merged = read_results(&dir).unwrap();
        assert_eq!(merged.len(), 2);
        assert_eq!(merged["c::a"], Outcome::Passed);
        assert_eq!(merged["c::b"], Outcome::Failed);
        std::fs::remove_dir_all(&dir).unwrap();
        let empty = std::env::temp_dir().join(format!("xtask-junit-empty-{}", std::process::id()));
        std::fs::create_dir_all(&empty).unwrap();
        assert!(read_results(&empty).unwrap_err().0.starts_with("no JUnit .xml file in"));
        std::fs::remove_dir_all(&empty).unwrap();
    }

    #[test]
    fn broken_files_are_errors() {
        assert!(parse_junit("<html></html>").unwrap_err().contains("not a JUnit report"));
        let unclosed = "<testsuite><testcase name=\"a\" classname=\"c\">";
        assert!(parse_junit(unclosed).unwrap_err().contains("no </testcase>"));
        let nameless = "<testsuite><testcase classname=\"c\"/></testsuite>";
        assert!(parse_junit(nameless).unwrap_err().contains("has no name"));
    }
}
