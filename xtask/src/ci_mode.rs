//! `cargo xtask ci-mode`: which mode the integration tests run in (native, Docker, or
//! both), decided from the GitHub event, the workflow inputs and the repository's
//! switches. The decision is a pure function of those ([`decide`]); reading the event
//! file and writing `$GITHUB_OUTPUT` are the only effects.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::github;
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

Writes mode=native|docker|both, native=true|false, docker=true|false and reason=... to
$GITHUB_OUTPUT when set, and prints one line saying why.

Examples:
  cargo xtask ci-mode                                   inside GitHub Actions
  cargo xtask ci-mode --event-name pull_request --event-path event.json")]
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
            Ok(Event::PullRequest {
                labels: labels
                    .iter()
                    .filter_map(|l| l.get("name").and_then(Value::as_str).map(str::to_string))
                    .collect(),
            })
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

/// `true`/`false` (any case); empty is "not given".
fn parse_bool(text: &str, what: &str) -> Result<Option<bool>, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "" => Ok(None),
        "true" => Ok(Some(true)),
        "false" => Ok(Some(false)),
        other => Err(format!("{what} must be true or false, got `{other}`")),
    }
}

fn parse_mode(text: &str, what: &str) -> Result<Mode, String> {
    match text.trim() {
        "" | "native" => Ok(Mode::Native),
        "docker" => Ok(Mode::Docker),
        other => Err(format!("{what} must be `native` or `docker`, got `{other}`")),
    }
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
        Ok(Inputs {
            event: parse_event(&name, payload)?,
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
    let (mode, reason) = decide(&inputs);
    println!("mode: {} ({reason})", mode.name());
    let both = mode == Mode::Both;
    github::set_outputs(&[
        ("mode", mode.name().to_string()),
        ("native", (mode == Mode::Native || both).to_string()),
        ("docker", (mode == Mode::Docker || both).to_string()),
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
    fn switch_values_are_checked() {
        assert_eq!(parse_mode("", "x"), Ok(Mode::Native));
        assert_eq!(parse_mode("docker", "x"), Ok(Mode::Docker));
        assert!(
            parse_mode("both", "TASKER_CI_DEFAULT_MODE")
                .unwrap_err()
                .contains("`native` or `docker`")
        );
        assert_eq!(parse_bool("TRUE", "x"), Ok(Some(true)));
        assert_eq!(parse_bool(" ", "x"), Ok(None));
        assert!(parse_bool("1", "--parallel").is_err());
    }
}
