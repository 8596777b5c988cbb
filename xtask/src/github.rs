//! Everything that reads or writes `GITHUB_*`: log groups, error annotations, the env
//! file of later steps, the step summary and which workflow run this is. Elsewhere the
//! code never checks for GitHub.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;

pub fn is_actions() -> bool {
    std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true")
}

/// The workflow run a job belongs to, as the run history records it: every shard of one
/// run (and its re-runs) shares `run_id`; each re-run has the next `attempt`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WorkflowRun {
    /// `GITHUB_RUN_ID`: the same for every job of the run, called workflows included.
    pub run_id: u64,
    /// `GITHUB_RUN_ATTEMPT`: 1, then one more per re-run.
    pub attempt: u32,
    /// `GITHUB_EVENT_NAME`: `pull_request`, `push`, `schedule`, `workflow_dispatch`...
    pub event: String,
    /// `GITHUB_JOB`: the job's id in its workflow file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    /// `GITHUB_REF`: `refs/heads/main`, `refs/pull/<number>/merge`...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_ref: Option<String>,
    /// The pull request's number, read from `GITHUB_REF`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_request: Option<u64>,
}

impl WorkflowRun {
    /// The run this process belongs to, when it runs on GitHub Actions (None locally:
    /// a local run is a run of its own).
    pub fn current() -> Option<WorkflowRun> {
        WorkflowRun::from_vars(|key| std::env::var(key).ok())
    }

    /// [`WorkflowRun::current`] from any source of variables. None outside Actions or
    /// when the run id or attempt is missing or not a number.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Option<WorkflowRun> {
        let var = |key: &str| var(key).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        if var("GITHUB_ACTIONS").as_deref() != Some("true") {
            return None;
        }
        let git_ref = var("GITHUB_REF");
        let pull_request = git_ref.as_deref().and_then(|r| {
            let rest = r.strip_prefix("refs/pull/")?;
            rest.split_once('/').and_then(|(number, _)| number.parse().ok())
        });
        Some(WorkflowRun {
            run_id: var("GITHUB_RUN_ID")?.parse().ok()?,
            attempt: var("GITHUB_RUN_ATTEMPT")?.parse().ok()?,
            event: var("GITHUB_EVENT_NAME").unwrap_or_default(),
            job: var("GITHUB_JOB"),
            git_ref,
            pull_request,
        })
    }
}

/// Runs `body` inside a collapsible log group on GitHub Actions (plain output elsewhere).
pub fn group<T>(title: &str, body: impl FnOnce() -> T) -> T {
    // GitHub does not nest groups: a phase's group ends where this one starts.
    end_phase();
    if is_actions() {
        println!("::group::{title}");
    } else {
        println!("--- {title}");
    }
    let out = body();
    if is_actions() {
        println!("::endgroup::");
    }
    out
}

static PHASE_GROUP_OPEN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
static STARTED: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();

/// Marks the start of the run, for [`phase`]'s elapsed times (else the first phase does).
pub fn start_clock() {
    STARTED.get_or_init(std::time::Instant::now);
}

/// `[m:ss]` since [`start_clock`].
pub fn elapsed() -> String {
    let seconds = STARTED.get_or_init(std::time::Instant::now).elapsed().as_secs();
    format!("[{}:{:02}]", seconds / 60, seconds % 60)
}

/// A header for the next phase of a run, with the time since the run began: a line on
/// the terminal, and on GitHub Actions a log group that lasts until the next phase.
pub fn phase(title: &str) {
    end_phase();
    if is_actions() {
        println!("::group::{title}");
        PHASE_GROUP_OPEN.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    eprintln!("==> {} {title}", elapsed());
}

/// Ends the current phase's log group (the summary that follows stays visible).
pub fn end_phase() {
    if PHASE_GROUP_OPEN.swap(false, std::sync::atomic::Ordering::Relaxed) {
        println!("::endgroup::");
    }
}

/// Asks GitHub to replace `secret` by `***` in every log line from now on.
pub fn mask(secret: &str) {
    if is_actions() && !secret.is_empty() {
        println!("::add-mask::{secret}");
    }
}

/// An error line that GitHub also shows as an annotation.
pub fn error(message: &str) {
    annotate("error", message);
}

/// A notice on the run's summary page (GitHub Actions only): advice a reviewer should see.
pub fn notice(message: &str) {
    annotate("notice", message);
}

fn annotate(kind: &str, message: &str) {
    if is_actions() {
        // Annotations are one line: newlines must be escaped.
        println!(
            "::{kind}::{}",
            message.replace('%', "%25").replace('\r', "%0D").replace('\n', "%0A")
        );
    }
}

fn append(var: &str, text: &str) -> anyhow::Result<bool> {
    let Some(path) = std::env::var_os(var).map(PathBuf::from) else { return Ok(false) };
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("opening ${var} ({})", path.display()))?;
    file.write_all(text.as_bytes()).with_context(|| format!("writing ${var}"))?;
    Ok(true)
}

/// Makes `vars` visible to later steps of the job (`$GITHUB_ENV`), when running there.
pub fn export_env(vars: &[(String, String)]) -> anyhow::Result<bool> {
    append("GITHUB_ENV", &env_file(vars))
}

/// Sets the outputs of the current step (`$GITHUB_OUTPUT`), when running there. Values
/// are single lines (a newline would start another output).
pub fn set_outputs(outputs: &[(&str, String)]) -> anyhow::Result<bool> {
    let text: String =
        outputs.iter().map(|(k, v)| format!("{k}={}\n", v.replace(['\r', '\n'], " "))).collect();
    append("GITHUB_OUTPUT", &text)
}

/// Appends markdown to the job's summary page (`$GITHUB_STEP_SUMMARY`), when running there.
pub fn step_summary(markdown: &str) -> anyhow::Result<bool> {
    append("GITHUB_STEP_SUMMARY", markdown)
}

/// `KEY=value` lines, the format of both `$GITHUB_ENV` and `services.env`.
pub fn env_file(vars: &[(String, String)]) -> String {
    vars.iter().map(|(k, v)| format!("{k}={v}\n")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_file_is_key_value_lines() {
        let vars =
            vec![("A".to_string(), "1".to_string()), ("B".to_string(), "http://x".to_string())];
        assert_eq!(env_file(&vars), "A=1\nB=http://x\n");
    }

    fn vars<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        |key| pairs.iter().find(|(k, _)| *k == key).map(|(_, v)| v.to_string())
    }

    #[test]
    fn a_pull_request_shard_knows_its_run_attempt_event_and_number() {
        let run = WorkflowRun::from_vars(vars(&[
            ("GITHUB_ACTIONS", "true"),
            ("GITHUB_RUN_ID", "16044567890"),
            ("GITHUB_RUN_ATTEMPT", "2"),
            ("GITHUB_EVENT_NAME", "pull_request"),
            ("GITHUB_JOB", "native"),
            ("GITHUB_REF", "refs/pull/412/merge"),
        ]));
        assert_eq!(
            run,
            Some(WorkflowRun {
                run_id: 16044567890,
                attempt: 2,
                event: "pull_request".into(),
                job: Some("native".into()),
                git_ref: Some("refs/pull/412/merge".into()),
                pull_request: Some(412),
            })
        );
    }

    #[test]
    fn a_push_has_no_pull_request_and_a_local_run_no_workflow_run() {
        let push = WorkflowRun::from_vars(vars(&[
            ("GITHUB_ACTIONS", "true"),
            ("GITHUB_RUN_ID", "7"),
            ("GITHUB_RUN_ATTEMPT", "1"),
            ("GITHUB_EVENT_NAME", "push"),
            ("GITHUB_REF", "refs/heads/main"),
        ]))
        .unwrap();
        assert_eq!((push.pull_request, push.job), (None, None));
        // Locally, even with a stray run id in the environment.
        assert_eq!(WorkflowRun::from_vars(vars(&[("GITHUB_RUN_ID", "7")])), None);
        // A run id that is not a number: not a run to merge shards by.
        let odd = [("GITHUB_ACTIONS", "true"), ("GITHUB_RUN_ID", "x"), ("GITHUB_RUN_ATTEMPT", "1")];
        assert_eq!(WorkflowRun::from_vars(vars(&odd)), None);
    }
}
