//! `cargo xtask ci-result`: the one check branch protection requires ("CI result"). It
//! passes when every job it needs passed, or was skipped by design (the integration
//! tests of a documentation-only pull request), and fails on a failure, a cancellation
//! or any other skip. Which jobs exist and may be skipped is the workflow's to say; the
//! verdict ([`judge`]) is pure.

use serde_json::Value;

use crate::github;
use crate::sys::error::{Exit, UserError};

#[derive(clap::Args)]
#[command(after_help = "\
A job passes when its result is `success`, or `skipped` and it is named in --may-skip;
`failure`, `cancelled` and any other skip fail the check. The verdict is a table on the
terminal and in the step summary.

Example (a workflow step passes `toJSON(needs)` through env):
  cargo xtask ci-result --needs '{\"unit\":{\"result\":\"success\"},\"integration\":{\"result\":\"skipped\"}}' --may-skip integration")]
pub struct Args {
    /// The results of the jobs this check covers: GitHub's `toJSON(needs)`
    #[arg(long, value_name = "JSON")]
    needs: String,
    /// Jobs that were skipped by design in this run (comma or space separated; may be empty)
    #[arg(long, value_name = "JOBS", default_value = "")]
    may_skip: String,
}

/// One job's line of the verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobVerdict {
    pub job: String,
    pub result: String,
    pub ok: bool,
}

/// Each needed job with its result and whether it lets the check pass.
pub fn judge(needs: &str, may_skip: &[&str]) -> Result<Vec<JobVerdict>, String> {
    let value: Value = serde_json::from_str(needs)
        .map_err(|e| format!("--needs is not JSON (GitHub's `toJSON(needs)`): {e}"))?;
    let jobs = value
        .as_object()
        .filter(|jobs| !jobs.is_empty())
        .ok_or("--needs names no jobs: pass `toJSON(needs)` of a job that needs the others")?;
    if let Some(unknown) = may_skip.iter().find(|name| !jobs.contains_key(**name)) {
        return Err(format!("--may-skip names `{unknown}`, which is not a job in --needs"));
    }
    jobs.iter()
        .map(|(job, status)| {
            let result = status.get("result").and_then(Value::as_str).ok_or_else(|| {
                format!("--needs: job `{job}` has no `result` (is it `toJSON(needs)`?)")
            })?;
            let ok =
                result == "success" || (result == "skipped" && may_skip.contains(&job.as_str()));
            Ok(JobVerdict { job: job.clone(), result: result.to_string(), ok })
        })
        .collect()
}

/// The verdict as a markdown table.
pub fn table(verdicts: &[JobVerdict], may_skip: &[&str]) -> String {
    let mut text = String::from("| Job | Result | |\n| --- | --- | --- |\n");
    for v in verdicts {
        let mark = match (v.ok, v.result.as_str()) {
            (true, "skipped") => "skipped by design",
            (true, _) => "ok",
            (false, "skipped") if !may_skip.contains(&v.job.as_str()) => "skipped unexpectedly",
            (false, _) => "fails the check",
        };
        text.push_str(&format!("| {} | {} | {mark} |\n", v.job, v.result));
    }
    text
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let may_skip: Vec<&str> =
        args.may_skip.split([',', ' ']).map(str::trim).filter(|s| !s.is_empty()).collect();
    let verdicts = judge(&args.needs, &may_skip).map_err(UserError)?;
    let table = table(&verdicts, &may_skip);
    print!("{table}");
    let failed: Vec<String> =
        verdicts.iter().filter(|v| !v.ok).map(|v| format!("{} ({})", v.job, v.result)).collect();
    let verdict = match failed.is_empty() {
        true => "CI result: passed".to_string(),
        false => format!("CI result: failed: {}", failed.join(", ")),
    };
    github::step_summary(&format!("## {verdict}\n\n{table}\n"))?;
    if failed.is_empty() {
        println!("{verdict}");
        Ok(())
    } else {
        eprintln!("error: {verdict}");
        github::error(&verdict);
        Err(Exit(1).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `toJSON(needs)` as GitHub renders it for the aggregate job of ci.yml.
    fn needs(xtask: &str, lint: &str, unit: &str, integration: &str) -> String {
        format!(
            r#"{{"xtask":{{"result":"{xtask}","outputs":{{"integration":"false","without":""}}}},
                "lint":{{"result":"{lint}","outputs":{{}}}},
                "unit":{{"result":"{unit}","outputs":{{}}}},
                "integration":{{"result":"{integration}","outputs":{{}}}}}}"#
        )
    }

    fn passes(needs: &str, may_skip: &[&str]) -> bool {
        judge(needs, may_skip).unwrap().iter().all(|v| v.ok)
    }

    #[test]
    fn every_job_passed_or_was_skipped_by_design() {
        assert!(passes(&needs("success", "success", "success", "success"), &[]));
        // A documentation-only pull request: the integration tests are skipped on purpose.
        assert!(passes(&needs("success", "success", "success", "skipped"), &["integration"]));
    }

    #[test]
    fn a_failure_a_cancellation_or_an_unexpected_skip_fails() {
        assert!(!passes(&needs("success", "failure", "success", "success"), &[]));
        assert!(!passes(&needs("success", "success", "cancelled", "skipped"), &["integration"]));
        // The unit tests failed, so the integration tests were skipped: not by design.
        let verdicts = judge(&needs("success", "success", "failure", "skipped"), &[]).unwrap();
        let failed: Vec<_> = verdicts.iter().filter(|v| !v.ok).map(|v| v.job.as_str()).collect();
        assert_eq!(failed, ["integration", "unit"]);
        let table = table(&verdicts, &[]);
        assert!(table.contains("| integration | skipped | skipped unexpectedly |"), "{table}");
        assert!(table.contains("| unit | failure | fails the check |"), "{table}");
        // A skip is by design only for the job named.
        assert!(!passes(&needs("skipped", "success", "success", "success"), &["integration"]));
    }

    #[test]
    fn bad_input_is_one_clear_line() {
        assert!(judge("{", &[]).unwrap_err().starts_with("--needs is not JSON"));
        assert!(judge("{}", &[]).unwrap_err().starts_with("--needs names no jobs"));
        assert!(judge("[]", &[]).unwrap_err().starts_with("--needs names no jobs"));
        assert_eq!(
            judge(r#"{"unit":{}}"#, &[]).unwrap_err(),
            "--needs: job `unit` has no `result` (is it `toJSON(needs)`?)"
        );
        assert_eq!(
            judge(&needs("success", "success", "success", "success"), &["docs"]).unwrap_err(),
            "--may-skip names `docs`, which is not a job in --needs"
        );
    }
}
