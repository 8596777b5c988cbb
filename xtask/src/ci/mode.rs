//! `cargo xtask ci-mode`: which mode the integration tests run in (native, Docker, or
//! both), decided from the GitHub event, the workflow inputs and the repository's
//! switches, and the shards each mode runs. The decision is a pure function of those
//! ([`decide`]); reading the event file, the pull request's current labels (the GitHub
//! API) and writing `$GITHUB_OUTPUT` are the effects.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::github;
use crate::github_api::Api;
use crate::sys::error::UserError;

/// The label that asks for the Docker mode on a pull request.
pub const RUN_DOCKER_LABEL: &str = "run-docker";
/// The label that asks for the native mode while Docker is the default (rollback).
pub const USE_NATIVE_LABEL: &str = "use-native";
/// The repository's default mode (a repository variable passed as env): `native`, or
/// `docker` to roll back to containers by default.
pub const DEFAULT_MODE_VAR: &str = "TASKER_CI_DEFAULT_MODE";
/// The parallel-validation switch (a repository variable passed as env): `true` runs
/// both modes on every event and compares them.
pub const PARALLEL_VAR: &str = "TASKER_CI_PARALLEL";
/// The `use-docker` workflow input, passed as env (workflows keep expressions out of
/// command lines).
pub const USE_DOCKER_VAR: &str = "TASKER_CI_USE_DOCKER";
/// The `shards` workflow input, passed as env: how many runners share each mode's tests.
pub const SHARDS_VAR: &str = "TASKER_CI_SHARDS";
/// At most this many shards (each is a runner).
const MAX_SHARDS: u32 = 20;

#[derive(clap::Args)]
#[command(after_help = "\
Precedence, first match wins:
  1. the use-docker input is true (--use-docker, TASKER_CI_USE_DOCKER,
     or the workflow_dispatch input)                             -> docker
  2. parallel validation is on (--parallel, TASKER_CI_PARALLEL)  -> both
  3. a scheduled run                                             -> both
  4. a pull request labelled run-docker                          -> docker
  5. a pull request labelled use-native                          -> native
  6. the default mode (--default-mode, TASKER_CI_DEFAULT_MODE)   -> native unless `docker`
Switch values ignore case (`Docker`, `TRUE`); anything else is an error.

A pull request's labels are read as they are now from the GitHub API when GITHUB_TOKEN
is set (GITHUB_API_URL, the pull request of the payload): a re-run replays the event
payload of the first run, labels included. Without a token, or when the API does not
answer, the payload's labels count, and one line says why.

Writes mode=native|docker|both, native=true|false, docker=true|false, shards=[1,...,N]
(the shard matrix) and reason=... to $GITHUB_OUTPUT when set, and prints why.

Examples:
  cargo xtask ci-mode                                   inside GitHub Actions
  cargo xtask ci-mode --event-name pull_request --event-path event.json
  cargo xtask ci-mode --event-name push --shards 3")]
pub struct Args {
    /// The event that started the workflow (default: $GITHUB_EVENT_NAME)
    #[arg(long, value_name = "NAME")]
    event_name: Option<String>,
    /// The event's JSON payload (default: $GITHUB_EVENT_PATH)
    #[arg(long, value_name = "FILE")]
    event_path: Option<PathBuf>,
    /// The workflow's use-docker input (`true`/`false`, empty: not given; default:
    /// $TASKER_CI_USE_DOCKER)
    #[arg(long, value_name = "BOOL")]
    use_docker: Option<String>,
    /// The default mode (default: $TASKER_CI_DEFAULT_MODE, else native)
    #[arg(long, value_name = "MODE")]
    default_mode: Option<String>,
    /// Parallel validation: run both modes (`true`/`false`; default: $TASKER_CI_PARALLEL)
    #[arg(long, value_name = "BOOL")]
    parallel: Option<String>,
    /// How many runners share each mode's tests (default: $TASKER_CI_SHARDS, else 1)
    #[arg(long, value_name = "N")]
    shards: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Native,
    Docker,
    Both,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Native => "native",
            Mode::Docker => "docker",
            Mode::Both => "both",
        }
    }
}

/// What the workflow was started by, as far as the mode is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    PullRequest {
        labels: Vec<String>,
    },
    Push,
    Dispatch {
        use_docker: Option<bool>,
    },
    Schedule,
    /// Any other event: the default mode applies.
    Other(String),
}

/// Everything the decision depends on.
#[derive(Debug, Clone)]
pub struct Inputs {
    pub event: Event,
    /// The `use-docker` input of a reusable workflow call.
    pub use_docker: Option<bool>,
    pub default_mode: Mode,
    pub parallel: bool,
}

/// The mode, and why, in the documented precedence.
pub fn decide(inputs: &Inputs) -> (Mode, String) {
    let dispatch_docker = matches!(inputs.event, Event::Dispatch { use_docker: Some(true) });
    if inputs.use_docker == Some(true) || dispatch_docker {
        return (Mode::Docker, "the use-docker input is true".into());
    }
    if inputs.parallel {
        return (Mode::Both, format!("parallel validation is on ({PARALLEL_VAR})"));
    }
    if inputs.event == Event::Schedule {
        return (Mode::Both, "a scheduled run tests both modes, so neither path rots".into());
    }
    if let Event::PullRequest { labels } = &inputs.event {
        if labels.iter().any(|l| l == RUN_DOCKER_LABEL) {
            return (Mode::Docker, format!("the pull request is labelled `{RUN_DOCKER_LABEL}`"));
        }
        if labels.iter().any(|l| l == USE_NATIVE_LABEL) {
            return (Mode::Native, format!("the pull request is labelled `{USE_NATIVE_LABEL}`"));
        }
    }
    let source = match inputs.default_mode {
        Mode::Native => "the default".to_string(),
        _ => format!("the default ({DEFAULT_MODE_VAR})"),
    };
    (inputs.default_mode, format!("{source}, no label or input asks otherwise"))
}

/// The event of `name` from its payload (needed for pull requests and dispatches).
pub fn parse_event(name: &str, payload: Option<(&Path, &str)>) -> Result<Event, String> {
    let json = |what: &str| -> Result<Value, String> {
        let (path, text) = payload.ok_or_else(|| {
            format!(
                "a {what} event needs its payload: GITHUB_EVENT_PATH is not set (pass --event-path FILE)"
            )
        })?;
        serde_json::from_str(text).map_err(|e| {
            format!("{} is not a JSON event payload: {e}", crate::sys::paths::display_path(path))
        })
    };
    match name {
        "pull_request" | "pull_request_target" => {
            let value = json("pull_request")?;
            let labels = value
                .pointer("/pull_request/labels")
                .and_then(Value::as_array)
                .ok_or_else(|| {
                    "the pull_request payload has no pull_request.labels: is it a pull request event?"
                        .to_string()
                })?;
            Ok(Event::PullRequest { labels: label_names(labels) })
        }
        "workflow_dispatch" => {
            let value = json("workflow_dispatch")?;
            let input = value.pointer("/inputs/use-docker");
            let use_docker = match input {
                None | Some(Value::Null) => None,
                Some(Value::Bool(b)) => Some(*b),
                Some(Value::String(s)) => parse_bool(s, "inputs.use-docker")?,
                Some(other) => {
                    return Err(format!("inputs.use-docker must be true or false, got {other}"));
                }
            };
            Ok(Event::Dispatch { use_docker })
        }
        "push" => Ok(Event::Push),
        "schedule" => Ok(Event::Schedule),
        "" => Err("the event name is empty: set GITHUB_EVENT_NAME or pass --event-name".into()),
        other => Ok(Event::Other(other.to_string())),
    }
}

/// The repository and number of the pull request a payload is about.
pub fn pull_request_of(payload: &str) -> Option<(String, u64)> {
    let value: Value = serde_json::from_str(payload).ok()?;
    let number = value
        .pointer("/pull_request/number")
        .or_else(|| value.get("number"))
        .and_then(Value::as_u64)?;
    let repo = value.pointer("/repository/full_name").and_then(Value::as_str)?;
    Some((repo.to_string(), number))
}

/// The labels to decide by, and one line saying where they came from: the pull
/// request's current labels from the API, else the payload's (with the reason).
pub fn current_labels(
    api: Option<&Api>,
    pull_request: Option<(String, u64)>,
    payload_labels: Vec<String>,
) -> (Vec<String>, String) {
    let fallback = |why: String| {
        let note = format!(
            "note: labels from the event payload (a re-run replays them as they were): {why}"
        );
        (payload_labels.clone(), note)
    };
    let Some(api) = api else {
        return fallback("no GITHUB_TOKEN to read the pull request's current labels".into());
    };
    let Some((repo, number)) = pull_request else {
        return fallback("the payload names no repository and pull request number".into());
    };
    let labels = api.get_json(&format!("/repos/{repo}/pulls/{number}")).and_then(|json| {
        json.get("labels")
            .and_then(Value::as_array)
            .map(|labels| label_names(labels))
            .ok_or_else(|| format!("the answer for {repo}#{number} has no `labels` list"))
    });
    match labels {
        Ok(labels) => {
            let shown = if labels.is_empty() { "none".to_string() } else { labels.join(", ") };
            (labels, format!("labels: {shown} (the pull request's current labels, GitHub API)"))
        }
        Err(why) => fallback(why),
    }
}

fn label_names(labels: &[Value]) -> Vec<String> {
    labels
        .iter()
        .filter_map(|l| l.get("name").and_then(Value::as_str).map(str::to_string))
        .collect()
}

/// `true`/`false` (any case); empty is "not given".
fn parse_bool(text: &str, what: &str) -> Result<Option<bool>, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "" => Ok(None),
        "true" => Ok(Some(true)),
        "false" => Ok(Some(false)),
        _ => Err(format!("{what} must be true or false, got `{}`", text.trim())),
    }
}

/// `native` or `docker` (any case); empty is the default, native.
fn parse_mode(text: &str, what: &str) -> Result<Mode, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "" | "native" => Ok(Mode::Native),
        "docker" => Ok(Mode::Docker),
        _ => Err(format!("{what} must be `native` or `docker`, got `{}`", text.trim())),
    }
}

/// A shard count: 1 to [`MAX_SHARDS`]; empty is 1.
fn parse_shards(text: &str, what: &str) -> Result<u32, String> {
    match text.trim() {
        "" => Ok(1),
        n => match n.parse::<u32>() {
            Ok(n) if (1..=MAX_SHARDS).contains(&n) => Ok(n),
            _ => {
                Err(format!("{what} must be a number of shards from 1 to {MAX_SHARDS}, got `{n}`"))
            }
        },
    }
}

/// The shard matrix as JSON: `[1, 2, ..., n]`.
pub fn shard_list(shards: u32) -> String {
    let list: Vec<String> = (1..=shards).map(|k| k.to_string()).collect();
    format!("[{}]", list.join(", "))
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let env = |key: &str| std::env::var(key).unwrap_or_default();
    let inputs = (|| -> Result<Inputs, String> {
        let name = args.event_name.clone().unwrap_or_else(|| env("GITHUB_EVENT_NAME"));
        let path = args
            .event_path
            .clone()
            .or_else(|| std::env::var_os("GITHUB_EVENT_PATH").map(PathBuf::from));
        let text =
            match &path {
                Some(path) => Some(std::fs::read_to_string(path).map_err(|e| {
                    format!("cannot read the event payload {}: {e}", path.display())
                })?),
                None => None,
            };
        let payload = path.as_deref().zip(text.as_deref());
        let mut event = parse_event(&name, payload)?;
        if let Event::PullRequest { labels } = &mut event {
            let pull_request = text.as_deref().and_then(pull_request_of);
            let (current, note) =
                current_labels(Api::from_env().as_ref(), pull_request, std::mem::take(labels));
            println!("{note}");
            *labels = current;
        }
        Ok(Inputs {
            event,
            use_docker: match &args.use_docker {
                Some(value) => parse_bool(value, "--use-docker")?,
                None => parse_bool(&env(USE_DOCKER_VAR), USE_DOCKER_VAR)?,
            },
            default_mode: match &args.default_mode {
                Some(mode) => parse_mode(mode, "--default-mode")?,
                None => parse_mode(&env(DEFAULT_MODE_VAR), DEFAULT_MODE_VAR)?,
            },
            parallel: match &args.parallel {
                Some(on) => parse_bool(on, "--parallel")?,
                None => parse_bool(&env(PARALLEL_VAR), PARALLEL_VAR)?,
            }
            .unwrap_or(false),
        })
    })()
    .map_err(UserError)?;
    let shards = match &args.shards {
        Some(n) => parse_shards(n, "--shards"),
        None => parse_shards(&env(SHARDS_VAR), SHARDS_VAR),
    }
    .map_err(UserError)?;
    let (mode, reason) = decide(&inputs);
    println!("mode: {} ({reason}); {shards} shard(s) per mode", mode.name());
    let both = mode == Mode::Both;
    github::set_outputs(&[
        ("mode", mode.name().to_string()),
        ("native", (mode == Mode::Native || both).to_string()),
        ("docker", (mode == Mode::Docker || both).to_string()),
        ("shards", shard_list(shards)),
        ("reason", reason),
    ])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(event: Event) -> Inputs {
        Inputs { event, use_docker: None, default_mode: Mode::Native, parallel: false }
    }

    fn pr(labels: &[&str]) -> Event {
        Event::PullRequest { labels: labels.iter().map(|l| l.to_string()).collect() }
    }

    #[test]
    fn native_is_the_default_and_labels_switch_it() {
        assert_eq!(decide(&inputs(pr(&[]))).0, Mode::Native);
        assert_eq!(decide(&inputs(pr(&["bug", "run-docker"]))).0, Mode::Docker);
        assert_eq!(decide(&inputs(Event::Push)).0, Mode::Native);
        assert_eq!(decide(&inputs(Event::Other("merge_group".into()))).0, Mode::Native);
        let (mode, reason) = decide(&inputs(pr(&["run-docker"])));
        assert_eq!(mode, Mode::Docker);
        assert!(reason.contains("labelled `run-docker`"), "{reason}");
    }

    #[test]
    fn the_rollback_makes_docker_the_default_and_use_native_opts_out() {
        let rollback = |event| Inputs { default_mode: Mode::Docker, ..inputs(event) };
        assert_eq!(decide(&rollback(pr(&[]))).0, Mode::Docker);
        assert_eq!(decide(&rollback(Event::Push)).0, Mode::Docker);
        assert_eq!(decide(&rollback(pr(&["use-native"]))).0, Mode::Native);
        // Both labels: the explicit request for production-like validation wins.
        assert_eq!(decide(&rollback(pr(&["use-native", "run-docker"]))).0, Mode::Docker);
    }

    #[test]
    fn inputs_and_switches_come_first() {
        let forced = Inputs { use_docker: Some(true), ..inputs(pr(&["use-native"])) };
        assert_eq!(decide(&forced).0, Mode::Docker);
        assert_eq!(decide(&inputs(Event::Dispatch { use_docker: Some(true) })).0, Mode::Docker);
        assert_eq!(decide(&inputs(Event::Dispatch { use_docker: Some(false) })).0, Mode::Native);
        let parallel = Inputs { parallel: true, ..inputs(pr(&["run-docker"])) };
        assert_eq!(decide(&parallel).0, Mode::Both);
        assert_eq!(decide(&inputs(Event::Schedule)).0, Mode::Both);
    }

    const LABELED: &str = r#"{"action":"labeled","label":{"name":"run-docker","color":"ededed"},
        "number":7,"pull_request":{"number":7,"labels":[{"id":1,"name":"bug"},{"id":2,"name":"run-docker"}],
        "head":{"sha":"abc"},"base":{"ref":"main"}}}"#;
    const UNLABELED: &str = r#"{"action":"unlabeled","label":{"name":"run-docker"},
        "pull_request":{"number":7,"labels":[{"id":1,"name":"bug"}]}}"#;

    fn event(name: &str, text: &str) -> Result<Event, String> {
        parse_event(name, Some((Path::new("event.json"), text)))
    }

    #[test]
    fn labels_come_from_the_pull_request_not_the_label_just_changed() {
        assert_eq!(event("pull_request", LABELED).unwrap(), pr(&["bug", "run-docker"]));
        // The `label` of an unlabeled event is the one removed: it must not count.
        assert_eq!(event("pull_request", UNLABELED).unwrap(), pr(&["bug"]));
    }

    #[test]
    fn dispatch_inputs_may_be_strings_or_booleans() {
        let string = r#"{"inputs":{"use-docker":"true"},"ref":"refs/heads/main"}"#;
        assert_eq!(
            event("workflow_dispatch", string).unwrap(),
            Event::Dispatch { use_docker: Some(true) }
        );
        let boolean = r#"{"inputs":{"use-docker":false}}"#;
        assert_eq!(
            event("workflow_dispatch", boolean).unwrap(),
            Event::Dispatch { use_docker: Some(false) }
        );
        let none = r#"{"inputs":{}}"#;
        assert_eq!(event("workflow_dispatch", none).unwrap(), Event::Dispatch { use_docker: None });
        let bad = r#"{"inputs":{"use-docker":"yes"}}"#;
        assert!(event("workflow_dispatch", bad).unwrap_err().contains("must be true or false"));
    }

    #[test]
    fn push_and_schedule_need_no_payload() {
        assert_eq!(parse_event("push", None).unwrap(), Event::Push);
        assert_eq!(parse_event("schedule", None).unwrap(), Event::Schedule);
    }

    #[test]
    fn a_missing_or_malformed_payload_is_a_clear_error() {
        let err = parse_event("pull_request", None).unwrap_err();
        assert!(err.contains("GITHUB_EVENT_PATH is not set"), "{err}");
        let err = event("pull_request", "{\"pull_request\": ").unwrap_err();
        assert!(err.starts_with("event.json is not a JSON event payload: "), "{err}");
        let err = event("pull_request", r#"{"ref":"refs/heads/main"}"#).unwrap_err();
        assert!(err.contains("no pull_request.labels"), "{err}");
        assert!(parse_event("", None).unwrap_err().contains("event name is empty"));
    }

    #[test]
    fn switch_values_ignore_case_and_garbage_is_an_error() {
        assert_eq!(parse_mode("", "x"), Ok(Mode::Native));
        assert_eq!(parse_mode("docker", "x"), Ok(Mode::Docker));
        // A repository variable typed as `Docker` is the rollback, as `TRUE` is true.
        assert_eq!(parse_mode(" Docker ", "x"), Ok(Mode::Docker));
        assert_eq!(parse_mode("NATIVE", "x"), Ok(Mode::Native));
        assert_eq!(
            parse_mode("Both", "TASKER_CI_DEFAULT_MODE").unwrap_err(),
            "TASKER_CI_DEFAULT_MODE must be `native` or `docker`, got `Both`"
        );
        assert_eq!(parse_bool("TRUE", "x"), Ok(Some(true)));
        assert_eq!(parse_bool(" ", "x"), Ok(None));
        assert_eq!(
            parse_bool("Yes", "--parallel").unwrap_err(),
            "--parallel must be true or false, got `Yes`"
        );
    }

    #[test]
    fn the_shard_count_becomes_the_matrix_list() {
        assert_eq!(parse_shards("", "x"), Ok(1));
        assert_eq!(parse_shards(" 2 ", "x"), Ok(2));
        assert_eq!(shard_list(1), "[1]");
        assert_eq!(shard_list(3), "[1, 2, 3]");
        for bad in ["0", "21", "two", "-1"] {
            let err = parse_shards(bad, "TASKER_CI_SHARDS").unwrap_err();
            assert!(
                err.starts_with("TASKER_CI_SHARDS must be a number of shards from 1 to 20"),
                "{err}"
            );
        }
    }

    const REPOSITORY: &str = r#""repository":{"full_name":"tasker/tasker-core"}"#;

    #[test]
    fn the_pull_request_of_a_payload_is_its_repository_and_number() {
        let payload = format!(r#"{{"number":7,"pull_request":{{"number":7}},{REPOSITORY}}}"#);
        assert_eq!(pull_request_of(&payload), Some(("tasker/tasker-core".into(), 7)));
        assert_eq!(pull_request_of(r#"{"pull_request":{"number":7}}"#), None);
        assert_eq!(pull_request_of("not json"), None);
    }

    use crate::github_api::tests::{answer, serve_once};

    const TOKEN: &str = "ghs_0123456789secret";
    /// GitHub's answer to `GET /repos/{owner}/{repo}/pulls/{number}`, abridged.
    const PULL: &str = r#"{"url":"https://api.github.com/repos/tasker/tasker-core/pulls/7","id":1,"number":7,"state":"open","title":"x","labels":[{"id":208045946,"node_id":"MDU6TGFiZWwyMDgwNDU5NDY=","url":"https://api.github.com/repos/tasker/tasker-core/labels/bug","name":"bug","description":"Something isn't working","color":"f29513","default":true},{"id":2,"node_id":"x","url":"u","name":"run-docker","description":null,"color":"ededed","default":false}],"head":{"sha":"abc"}}"#;

    /// `current_labels` against a local server answering `response`; the payload's
    /// labels are `["use-native"]`.
    fn labels_from(response: String) -> (Vec<String>, String, String) {
        let (base, server) = serve_once(response);
        let api = Api::new(&base, TOKEN);
        let (labels, note) = current_labels(
            Some(&api),
            Some(("tasker/tasker-core".into(), 7)),
            vec!["use-native".into()],
        );
        let request = server.join().unwrap();
        assert!(request.starts_with("GET /repos/tasker/tasker-core/pulls/7 "), "{request}");
        assert!(!note.contains(TOKEN), "the token leaked into: {note}");
        (labels, note, request)
    }

    fn assert_fell_back(labels: Vec<String>, note: &str, why: &str) {
        assert_eq!(labels, ["use-native"], "{note}");
        assert!(
            note.starts_with("note: labels from the event payload (a re-run replays them as they were): GET http://127.0.0.1:"),
            "{note}"
        );
        assert!(note.contains(why), "{note}");
        assert_eq!(note.lines().count(), 1, "{note}");
    }

    #[test]
    fn the_current_labels_come_from_the_api() {
        let (labels, note, _) = labels_from(answer(
            "200 OK",
            &["x-ratelimit-limit: 5000", "x-ratelimit-remaining: 4999"],
            PULL,
        ));
        assert_eq!(labels, ["bug", "run-docker"]);
        assert_eq!(note, "labels: bug, run-docker (the pull request's current labels, GitHub API)");
        // And they decide: the payload said use-native, the pull request now says run-docker.
        let inputs = Inputs { event: Event::PullRequest { labels }, ..inputs(Event::Push) };
        assert_eq!(decide(&inputs).0, Mode::Docker);
    }

    #[test]
    fn a_404_401_or_rate_limit_falls_back_to_the_payload() {
        let (labels, note, _) = labels_from(answer(
            "404 Not Found",
            &[],
            r#"{"message":"Not Found","documentation_url":"https://docs.github.com/rest/pulls/pulls#get-a-pull-request","status":"404"}"#,
        ));
        assert_fell_back(labels, &note, "404: Not Found (no such pull request");
        let (labels, note, _) = labels_from(answer(
            "401 Unauthorized",
            &[],
            r#"{"message":"Bad credentials","documentation_url":"https://docs.github.com/rest","status":"401"}"#,
        ));
        assert_fell_back(labels, &note, "401: Bad credentials (the token was refused)");
        let (labels, note, _) = labels_from(answer(
            "403 Forbidden",
            &[
                "x-ratelimit-limit: 1000",
                "x-ratelimit-remaining: 0",
                "x-ratelimit-used: 1000",
                "x-ratelimit-reset: 1764550000",
                "x-ratelimit-resource: core",
            ],
            r#"{"message":"API rate limit exceeded for installation ID 12345.","documentation_url":"https://docs.github.com/rest/overview/rate-limits-for-the-rest-api","status":"403"}"#,
        ));
        assert_fell_back(
            labels,
            &note,
            "403, the API rate limit is used up, it resets at 00:46:40 UTC",
        );
    }

    #[test]
    fn a_malformed_answer_or_no_server_falls_back_to_the_payload() {
        let (labels, note, _) = labels_from(answer("200 OK", &[], r#"{"labels": [ {"name": "#));
        assert_fell_back(labels, &note, "the answer is not JSON");
        let (labels, note, _) = labels_from(answer("200 OK", &[], r#"{"number":7}"#));
        assert!(
            note.ends_with("the answer for tasker/tasker-core#7 has no `labels` list"),
            "{note}"
        );
        assert_eq!(labels, ["use-native"]);
        // Connection refused: a port nothing listens on any more.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let api = Api::new(&format!("http://127.0.0.1:{port}"), TOKEN);
        let (labels, note) =
            current_labels(Some(&api), Some(("o/r".into(), 7)), vec!["use-native".into()]);
        assert_fell_back(labels, &note, "/repos/o/r/pulls/7: ");
        assert!(!note.contains(TOKEN));
    }

    #[test]
    fn without_a_token_the_payload_counts_and_one_line_says_so() {
        let (labels, note) = current_labels(None, Some(("o/r".into(), 7)), vec!["bug".into()]);
        assert_eq!(labels, ["bug"]);
        assert_eq!(
            note,
            "note: labels from the event payload (a re-run replays them as they were): no GITHUB_TOKEN to read the pull request's current labels"
        );
    }
}
