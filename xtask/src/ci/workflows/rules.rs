//! The rules that make the workflows hold on GitHub itself, where no test of ours runs:
//! re-runs (artifact names are unique per run, re-runs included), label events (they
//! fire for every label), cancellations (`always()` runs on a cancelled run), the
//! concurrency of runs on main, the required check, and the pins (actions, toolchain,
//! nextest). Each rule reads the parsed workflows and returns one line per problem,
//! `file: line N: ...`; `cargo xtask lint` and the tests run them all ([`check`]).

use std::path::Path;

use super::yaml::{self, Node, Value};
use crate::ci::mode::{RUN_DOCKER_LABEL, USE_NATIVE_LABEL};

/// The job branch protection requires ("CI result"): it needs every other job.
pub const AGGREGATE_JOB: &str = "ci-result";
/// Jobs the aggregate leaves out: they report, they do not decide.
const INFORMATIONAL_JOBS: &[&str] = &["report"];
/// Artifacts a later re-run may still download live at least this long.
pub const MIN_RETENTION_DAYS: u32 = 7;
/// The first release of each action that runs on Node 24 (`using: node24` in its
/// action.yml at that tag); older ones run on the deprecated Node 20.
const NODE24_SINCE: &[(&str, (u32, u32, u32))] = &[
    ("actions/checkout", (5, 0, 0)),
    ("actions/upload-artifact", (6, 0, 0)),
    ("actions/download-artifact", (7, 0, 0)),
    ("actions/cache", (5, 0, 0)),
    ("Swatinem/rust-cache", (2, 9, 0)),
];
/// Actions that install a toolchain of their own, against the one pin.
const TOOLCHAIN_ACTIONS: &[&str] =
    &["dtolnay/rust-toolchain", "actions-rs/toolchain", "actions-rust-lang/setup-rust-toolchain"];

/// A workflow file, parsed.
pub struct Workflow {
    /// As shown in messages (relative to the root).
    pub file: String,
    pub text: String,
    pub root: yaml::Node,
}

/// The repository facts the rules compare the workflows with.
pub struct Repository {
    /// `rust-toolchain.toml`, if there is one.
    pub toolchain: Option<String>,
    /// The workspace's `Cargo.toml`.
    pub cargo_toml: String,
}

impl Repository {
    pub fn here() -> Repository {
        let root = crate::sys::paths::root();
        Repository {
            toolchain: std::fs::read_to_string(root.join("rust-toolchain.toml")).ok(),
            cargo_toml: std::fs::read_to_string(root.join("Cargo.toml")).unwrap_or_default(),
        }
    }
}

/// Reads and parses one workflow file.
pub fn load(file: &Path) -> Result<Workflow, String> {
    let shown = crate::sys::paths::display_path(file);
    let text = std::fs::read_to_string(file).map_err(|e| format!("{shown}: cannot read: {e}"))?;
    parse(&shown, text)
}

pub fn parse(file: &str, text: String) -> Result<Workflow, String> {
    let root = yaml::parse(&text).map_err(|e| format!("{file}: {e}"))?;
    Ok(Workflow { file: file.to_string(), text, root })
}

/// Every rule over every workflow.
pub fn check(workflows: &[Workflow], repository: &Repository) -> Vec<String> {
    let mut problems = Vec::new();
    problems.extend(uploads_survive_reruns(workflows));
    problems.extend(downloads_find_their_uploads(workflows));
    problems.extend(no_always_where_needs_can_fail(workflows));
    problems.extend(one_toolchain_pin(workflows, repository));
    problems.extend(label_events_are_gated(workflows));
    problems.extend(actions_are_pinned(workflows));
    problems.extend(nextest_is_pinned(workflows));
    problems.extend(main_keeps_every_run(workflows));
    problems.extend(one_required_check(workflows));
    problems.extend(one_shard_list(workflows));
    problems
}

/// The condition under which a `pull_request` event starts work: anything but a label
/// change, or a change of one of the two mode labels.
pub fn label_gate() -> String {
    format!(
        "github.event.action != 'labeled' && github.event.action != 'unlabeled' \
         || github.event.label.name == '{RUN_DOCKER_LABEL}' \
         || github.event.label.name == '{USE_NATIVE_LABEL}'"
    )
}

/// Upload-artifact v4+ refuses a name the run (re-runs included) already has: every
/// upload replaces the earlier attempt's (`overwrite: true`) or names its attempt.
pub fn uploads_survive_reruns(workflows: &[Workflow]) -> Vec<String> {
    let mut problems = Vec::new();
    for (w, step) in steps_using(workflows, "actions/upload-artifact") {
        let name = step.at(&["with", "name"]).and_then(Node::str).unwrap_or("artifact");
        let overwrite = step.at(&["with", "overwrite"]).and_then(Node::str) == Some("true");
        if !overwrite && !name.contains("github.run_attempt") {
            problems.push(at(w, step, &format!(
                "artifact `{name}` would fail a re-run (409: the name exists): add `overwrite: true`, or `${{{{ github.run_attempt }}}}` to the name"
            )));
        }
        problems.extend(retention(w, step, name));
    }
    problems
}

fn retention(w: &Workflow, step: &Node, name: &str) -> Option<String> {
    let days = step.at(&["with", "retention-days"])?;
    match days.str().and_then(|d| d.parse::<u32>().ok()) {
        Some(d) if d >= MIN_RETENTION_DAYS => None,
        _ => Some(at(
            w,
            days,
            &format!(
                "artifact `{name}` keeps {} day(s): a re-run after that cannot download it (at least {MIN_RETENTION_DAYS})",
                days.str().unwrap_or("?")
            ),
        )),
    }
}

/// A download by name finds the one artifact of that name: an upload with exactly that
/// name that a re-run replaces (a partial re-run downloads what jobs it does not repeat
/// uploaded). A pattern matches at least one upload's name.
pub fn downloads_find_their_uploads(workflows: &[Workflow]) -> Vec<String> {
    let uploads: Vec<(String, bool)> = steps_using(workflows, "actions/upload-artifact")
        .map(|(_, step)| {
            let name = step.at(&["with", "name"]).and_then(Node::str).unwrap_or("artifact");
            let overwrite = step.at(&["with", "overwrite"]).and_then(Node::str) == Some("true");
            (name.to_string(), overwrite)
        })
        .collect();
    let mut problems = Vec::new();
    for (w, step) in steps_using(workflows, "actions/download-artifact") {
        if let Some(name) = step.at(&["with", "name"]).and_then(Node::str) {
            match uploads.iter().find(|(n, _)| n == name) {
                None => problems.push(at(w, step, &format!(
                    "downloads artifact `{name}`, which no upload step of the workflows names"
                ))),
                Some((_, false)) => problems.push(at(w, step, &format!(
                    "downloads artifact `{name}` by name: its upload must replace the earlier attempt's (`overwrite: true`), or a re-run finds none or two"
                ))),
                Some(_) => {}
            }
        } else if let Some(pattern) = step.at(&["with", "pattern"]).and_then(Node::str) {
            if !uploads.iter().any(|(n, _)| glob(pattern, &sample(n))) {
                problems.push(at(
                    w,
                    step,
                    &format!("pattern `{pattern}` matches no artifact the workflows upload"),
                ));
            }
        } else {
            problems.push(at(
                w,
                step,
                "a download without `name` or `pattern` takes every artifact",
            ));
        }
    }
    problems
}

/// `always()` runs a job even on a cancelled run: only the required check may use it
/// (a cancelled run must fail it, not skip it). A job after jobs that can fail says
/// which results it runs after: `!cancelled()` and `needs.<job>.result`.
pub fn no_always_where_needs_can_fail(workflows: &[Workflow]) -> Vec<String> {
    let mut problems = Vec::new();
    for w in workflows {
        for (id, job) in jobs(w) {
            let aggregate = id == AGGREGATE_JOB;
            if let Some(cond) = job.get("if") {
                let text = cond.str().unwrap_or_default();
                if text.contains("always()") && !aggregate {
                    problems.push(at(w, cond, &format!(
                        "job `{id}` runs on `always()`, even on a cancelled run: use `!cancelled()` and check `needs.<job>.result`"
                    )));
                }
                let needs: Vec<&str> = job
                    .get("needs")
                    .map(|n| n.items())
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|n| n.str())
                    .collect();
                if text.contains("!cancelled()")
                    && !needs.iter().any(|n| text.contains(&format!("needs.{n}.result")))
                {
                    problems.push(at(w, cond, &format!(
                        "job `{id}` runs after failed needs: say which results it runs after (`needs.<job>.result`)"
                    )));
                }
            }
            for step in steps(job) {
                if let Some(cond) =
                    step.get("if").filter(|c| c.str().is_some_and(|t| t.contains("always()")))
                {
                    problems.push(at(w, cond, &format!(
                        "a step of job `{id}` runs on `always()`, even on a cancelled run: use `!cancelled()`"
                    )));
                }
            }
        }
    }
    problems
}

/// One toolchain for CI and developers: `rust-toolchain.toml` pins a release with
/// clippy and rustfmt, the workspace's `rust-version` names the same release, and no
/// workflow picks another toolchain.
pub fn one_toolchain_pin(workflows: &[Workflow], repository: &Repository) -> Vec<String> {
    let mut problems = Vec::new();
    match repository.toolchain.as_deref().map(toolchain_pin) {
        None => problems.push(
            "rust-toolchain.toml: missing: CI would build with whatever Rust the runner image ships"
                .to_string(),
        ),
        Some(Err(why)) => problems.push(format!("rust-toolchain.toml: {why}")),
        Some(Ok(channel)) => {
            let minor = channel.rsplit_once('.').map_or(channel.as_str(), |(mm, _)| mm);
            match rust_version(&repository.cargo_toml) {
                Some(v) if v == channel || v == minor => {}
                found => problems.push(format!(
                    "Cargo.toml: workspace rust-version is {}, but the toolchain pin is {channel}: make it `{minor}` (the one release CI builds with)",
                    found.as_deref().unwrap_or("missing")
                )),
            }
        }
    }
    for w in workflows {
        for (id, job) in jobs(w) {
            for step in steps(job) {
                let uses = step.get("uses").and_then(Node::str).unwrap_or_default();
                if let Some(action) = TOOLCHAIN_ACTIONS.iter().find(|a| uses.starts_with(*a)) {
                    problems.push(at(w, step, &format!(
                        "job `{id}` installs a toolchain with {action}: rust-toolchain.toml is the one pin"
                    )));
                }
                if let Some(input) = step.at(&["with", "toolchain"]) {
                    problems.push(at(w, input, &format!(
                        "job `{id}` passes a `toolchain:` input: rust-toolchain.toml is the one pin"
                    )));
                }
            }
            for env in [job.get("env")]
                .into_iter()
                .flatten()
                .chain(steps(job).filter_map(|s| s.get("env")))
            {
                if let Some(var) = env.get("RUSTUP_TOOLCHAIN") {
                    problems.push(at(
                        w,
                        var,
                        &format!(
                            "job `{id}` sets RUSTUP_TOOLCHAIN: rust-toolchain.toml is the one pin"
                        ),
                    ));
                }
            }
        }
    }
    problems
}

/// The channel of a `rust-toolchain.toml`: a full release with clippy and rustfmt.
pub fn toolchain_pin(text: &str) -> Result<String, String> {
    let doc: toml_edit::DocumentMut = text.parse().map_err(|e| format!("malformed TOML: {e}"))?;
    let channel = doc
        .get("toolchain")
        .and_then(|t| t.get("channel"))
        .and_then(|c| c.as_str())
        .ok_or("no [toolchain] channel")?;
    if version(channel).is_none() {
        return Err(format!(
            "channel `{channel}` moves: pin a release (X.Y.Z), so a runner image update cannot turn lint red"
        ));
    }
    let components: Vec<&str> = doc
        .get("toolchain")
        .and_then(|t| t.get("components"))
        .and_then(|c| c.as_array())
        .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    for needed in ["clippy", "rustfmt"] {
        if !components.contains(&needed) {
            return Err(format!("components lack `{needed}` (`cargo xtask lint` runs it)"));
        }
    }
    Ok(channel.to_string())
}

fn rust_version(cargo_toml: &str) -> Option<String> {
    let doc: toml_edit::DocumentMut = cargo_toml.parse().ok()?;
    let version = doc.get("workspace")?.get("package")?.get("rust-version")?.as_str()?;
    Some(version.to_string())
}

/// `labeled`/`unlabeled` fire for every label: every job that starts a run's work runs
/// only for the two mode labels, the concurrency group keeps other label events apart
/// (else they cancel the running CI), and the required check runs under another name
/// for them (a skipped "CI result" would pass over the real one).
pub fn label_events_are_gated(workflows: &[Workflow]) -> Vec<String> {
    let gate = label_gate();
    let mut problems = Vec::new();
    for w in workflows {
        let Some(types) = w.root.at(&["on", "pull_request", "types"]) else { continue };
        let label_events =
            types.items().iter().any(|t| matches!(t.str(), Some("labeled" | "unlabeled")));
        if !label_events {
            continue;
        }
        let gated = |node: Option<&Node>| {
            node.and_then(Node::str).is_some_and(|t| squash(t).contains(&gate))
        };
        match w.root.at(&["concurrency", "group"]) {
            Some(group) if !gated(Some(group)) => problems.push(at(w, group, &format!(
                "the concurrency group must give label events that start no work a group of their own ({gate}), or they cancel the running CI"
            ))),
            _ => {}
        }
        for (id, job) in jobs(w) {
            if id == AGGREGATE_JOB {
                if !gated(job.get("name")) {
                    problems.push(at(w, job, &format!(
                        "job `{id}` must be named otherwise when a label change starts no work ({gate})"
                    )));
                }
                for step in steps(job).filter(|s| !gated(s.get("if"))) {
                    problems.push(at(
                        w,
                        step,
                        &format!(
                            "a step of job `{id}` must run only when the event starts work ({gate})"
                        ),
                    ));
                }
            } else if job.get("needs").is_none() && !gated(job.get("if")) {
                problems.push(at(
                    w,
                    job,
                    &format!("job `{id}` would run on every label change: give it `if: {gate}`"),
                ));
            }
        }
    }
    problems
}

/// Every action is pinned by a full commit SHA with its release as a `# vX.Y.Z`
/// comment, and no action is older than its first Node 24 release.
pub fn actions_are_pinned(workflows: &[Workflow]) -> Vec<String> {
    let mut problems = Vec::new();
    for w in workflows {
        let mut uses: Vec<&Node> = Vec::new();
        for (_, job) in jobs(w) {
            uses.extend(job.get("uses"));
            uses.extend(steps(job).filter_map(|s| s.get("uses")));
        }
        for node in uses {
            let value = node.str().unwrap_or_default();
            if value.starts_with("./") {
                continue;
            }
            let Some((action, sha)) = value.split_once('@') else {
                problems.push(at(
                    w,
                    node,
                    &format!("`{value}` is not pinned: add @<commit SHA> # vX.Y.Z"),
                ));
                continue;
            };
            if sha.len() != 40 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
                problems.push(at(w, node, &format!(
                    "`{value}` is pinned by a tag or branch, which can move: pin the full commit SHA"
                )));
            }
            let line = yaml::raw_line(&w.text, node.line);
            let release = line
                .split_once('#')
                .and_then(|(_, c)| c.trim().strip_prefix('v'))
                .and_then(version);
            let Some(release) = release else {
                problems.push(at(
                    w,
                    node,
                    &format!("`{action}` needs its release as a `# vX.Y.Z` comment"),
                ));
                continue;
            };
            let repo = action.splitn(3, '/').take(2).collect::<Vec<_>>().join("/");
            if let Some((_, floor)) = NODE24_SINCE.iter().find(|(a, _)| *a == repo)
                && release < *floor
            {
                problems.push(at(w, node, &format!(
                    "`{action}` v{}.{}.{} runs on the deprecated Node 20: use v{}.{}.{} or newer",
                    release.0, release.1, release.2, floor.0, floor.1, floor.2
                )));
            }
        }
    }
    problems
}

/// Every job that installs cargo-nextest installs the pinned version (xtask's, which a
/// fresh machine installs too), so the build job's archive and the shards agree.
pub fn nextest_is_pinned(workflows: &[Workflow]) -> Vec<String> {
    let pinned = crate::requirements::NEXTEST;
    let mut problems = Vec::new();
    let mut found = 0;
    for (w, step) in steps_using(workflows, "taiki-e/install-action") {
        let tool = step.at(&["with", "tool"]).and_then(Node::str).unwrap_or_default();
        if tool.contains("nextest") {
            found += 1;
            if tool != pinned {
                problems.push(at(w, step, &format!(
                    "installs `{tool}`: install `{pinned}` (xtask's pin, requirements.rs), the same in every job"
                )));
            }
        }
    }
    if found == 0 && !workflows.is_empty() {
        problems.push(format!("no workflow installs `{pinned}`"));
    }
    problems
}

/// Runs on main are never dropped: a concurrency group keeps one waiting run and
/// cancels older waiting ones, so pushes, the schedule and dispatches each get a group
/// of their own (the run id in the group).
pub fn main_keeps_every_run(workflows: &[Workflow]) -> Vec<String> {
    let mut problems = Vec::new();
    for w in workflows {
        let on = w.root.get("on");
        let main_events = ["push", "schedule", "workflow_dispatch"]
            .iter()
            .any(|e| on.is_some_and(|on| on.get(e).is_some()));
        let Some(group) = w.root.at(&["concurrency", "group"]) else { continue };
        if main_events && !group.str().unwrap_or_default().contains("github.run_id") {
            problems.push(at(w, group, "pushes, the schedule and dispatches share a concurrency group: a third run cancels the waiting one; give each run its own group (`github.run_id`)"));
        }
    }
    problems
}

/// A workflow that runs on pull requests has one job branch protection can require:
/// it needs every other job (the informational ones aside) and runs always.
pub fn one_required_check(workflows: &[Workflow]) -> Vec<String> {
    let mut problems = Vec::new();
    for w in workflows {
        if w.root.at(&["on", "pull_request"]).is_none() {
            continue;
        }
        let all: Vec<&str> = jobs(w).map(|(id, _)| id).collect();
        let Some(aggregate) = w.root.at(&["jobs", AGGREGATE_JOB]) else {
            problems.push(format!(
                "{}: no `{AGGREGATE_JOB}` job: branch protection needs one check that every run creates (a documentation-only pull request skips the integration tests, and their checks never appear)",
                w.file
            ));
            continue;
        };
        let needs: Vec<&str> = aggregate
            .get("needs")
            .map(|n| n.items())
            .unwrap_or_default()
            .iter()
            .filter_map(|n| n.str())
            .collect();
        for job in all.iter().filter(|j| **j != AGGREGATE_JOB && !INFORMATIONAL_JOBS.contains(j)) {
            if !needs.contains(job) {
                problems.push(at(
                    w,
                    aggregate,
                    &format!("job `{AGGREGATE_JOB}` must need `{job}`"),
                ));
            }
        }
        if aggregate.get("if").and_then(Node::str) != Some("always()") {
            problems.push(at(w, aggregate, &format!(
                "job `{AGGREGATE_JOB}` must run `if: always()`: skipped, it would pass a cancelled or failed run"
            )));
        }
        let name = aggregate.get("name").and_then(Node::str).unwrap_or_default();
        if !squash(name).contains("!contains(needs.*.result, 'cancelled')") {
            problems.push(at(w, aggregate, &format!(
                "job `{AGGREGATE_JOB}` must take another name when a needed job was cancelled (`!contains(needs.*.result, 'cancelled')`): a run a newer one cancelled would put a failed check over the commit's while that one runs"
            )));
        }
    }
    problems
}

/// The number of shards is set once: every shard matrix is the same expression, no list.
pub fn one_shard_list(workflows: &[Workflow]) -> Vec<String> {
    let mut problems = Vec::new();
    let mut first: Option<String> = None;
    for w in workflows {
        for (id, job) in jobs(w) {
            let Some(shard) = job.at(&["strategy", "matrix", "shard"]) else { continue };
            match &shard.value {
                Value::Scalar(expr) if expr.contains("${{") => match &first {
                    None => first = Some(expr.clone()),
                    Some(f) if f != expr => problems.push(at(w, shard, &format!(
                        "job `{id}` takes its shards from `{expr}`, another job from `{f}`: one source"
                    ))),
                    Some(_) => {}
                },
                _ => problems.push(at(w, shard, &format!(
                    "job `{id}` lists its shards itself: take them from the one place (`fromJSON(needs.mode.outputs.shards)`)"
                ))),
            }
        }
    }
    problems
}

// Below: the generic helpers the rules share.

/// `file: line N: message`.
fn at(w: &Workflow, node: &Node, message: &str) -> String {
    format!("{}: line {}: {message}", w.file, node.line)
}

fn jobs(w: &Workflow) -> impl Iterator<Item = (&str, &Node)> {
    w.root
        .at(&["jobs"])
        .map(Node::entries)
        .unwrap_or_default()
        .iter()
        .map(|(id, job)| (id.as_str(), job))
}

fn steps(job: &Node) -> impl Iterator<Item = &Node> {
    job.get("steps").map(Node::items).unwrap_or_default().into_iter()
}

/// Every step of every workflow that uses `action` (at any version).
fn steps_using<'a>(
    workflows: &'a [Workflow],
    action: &'a str,
) -> impl Iterator<Item = (&'a Workflow, &'a Node)> {
    workflows.iter().flat_map(move |w| {
        jobs(w)
            .flat_map(|(_, job)| steps(job))
            .filter(move |s| {
                s.get("uses")
                    .and_then(Node::str)
                    .is_some_and(|u| u.split('@').next() == Some(action))
            })
            .map(move |s| (w, s))
    })
}

/// Whitespace collapsed to single spaces (folded scalars keep line breaks' spaces).
fn squash(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A name with its `${{ ... }}` expressions replaced by a sample value.
fn sample(name: &str) -> String {
    with_samples(name)
}

/// `text` with each `${{ ... }}` expression replaced by a sample value (`1`: valid
/// wherever this repository's workflows use one).
pub fn with_samples(text: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${{") {
        out.push_str(&rest[..start]);
        match rest[start..].find("}}") {
            Some(end) => {
                out.push('1');
                rest = &rest[start + end + 2..];
            }
            None => {
                rest = &rest[start..];
                break;
            }
        }
    }
    out.push_str(rest);
    out
}

/// `*` matches any run of characters.
fn glob(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((head, rest)) => {
            text.starts_with(head)
                && (0..=text.len() - head.len()).any(|i| glob(rest, &text[head.len() + i..]))
        }
    }
}

/// `X.Y.Z` as numbers.
fn version(text: &str) -> Option<(u32, u32, u32)> {
    let mut parts = text.trim().split('.').map(|p| p.parse::<u32>().ok());
    let v = (parts.next()??, parts.next()??, parts.next()??);
    parts.next().is_none().then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workflow(file: &str, text: &str) -> Workflow {
        parse(file, text.to_string()).unwrap()
    }

    /// The workflows as they were before these rules (the main branch of that day).
    fn before() -> Vec<Workflow> {
        vec![
            workflow("ci.yml", include_str!("testdata/ci-before.yml")),
            workflow("test-integration.yml", include_str!("testdata/test-integration-before.yml")),
        ]
    }

    fn now() -> Vec<Workflow> {
        crate::sys::paths::workflow_files().iter().map(|f| load(f).unwrap()).collect()
    }

    const TOOLCHAIN: &str =
        "[toolchain]\nchannel = \"1.95.0\"\ncomponents = [\"clippy\", \"rustfmt\"]\n";

    fn repository(toolchain: Option<&str>, rust_version: &str) -> Repository {
        Repository {
            toolchain: toolchain.map(str::to_string),
            cargo_toml: format!(
                "[workspace]\n[workspace.package]\nrust-version = \"{rust_version}\"\n"
            ),
        }
    }

    fn assert_mentions(problems: &[String], text: &str) {
        assert!(problems.iter().any(|p| p.contains(text)), "no `{text}` in {problems:#?}");
    }

    /// Each rule holds for the repository's workflows and fails on the ones before it.
    fn holds_now_and_failed_before(rule: fn(&[Workflow]) -> Vec<String>) -> Vec<String> {
        let problems = rule(&now());
        assert!(problems.is_empty(), "{}", problems.join("\n"));
        let before = rule(&before());
        assert!(!before.is_empty(), "the rule finds nothing in the old workflows");
        before
    }

    #[test]
    fn every_upload_survives_a_rerun() {
        let before = holds_now_and_failed_before(uploads_survive_reruns);
        assert_mentions(&before, "artifact `history-unit` would fail a re-run");
        assert_mentions(&before, "artifact `ci-archive` keeps 1 day(s)");
    }

    #[test]
    fn downloads_by_name_find_the_one_replaced_upload_and_patterns_match() {
        let before = holds_now_and_failed_before(downloads_find_their_uploads);
        assert_mentions(&before, "downloads artifact `ci-archive` by name");
        let renamed = workflow(
            "x.yml",
            "jobs:\n  a:\n    steps:\n      - uses: actions/upload-artifact@x\n        with:\n          name: hist-${{ matrix.k }}\n          overwrite: true\n      - uses: actions/download-artifact@x\n        with:\n          pattern: history-*\n",
        );
        let problems = downloads_find_their_uploads(&[renamed]);
        assert_eq!(
            problems,
            ["x.yml: line 8: pattern `history-*` matches no artifact the workflows upload"]
        );
    }

    #[test]
    fn no_always_where_needs_can_fail_and_results_are_checked() {
        let before = holds_now_and_failed_before(no_always_where_needs_can_fail);
        assert_mentions(&before, "job `report` runs on `always()`");
        assert_mentions(&before, "job `compare` runs on `always()`");
        assert_mentions(&before, "a step of job `unit` runs on `always()`");
        let vague = workflow("x.yml", "jobs:\n  b:\n    needs: a\n    if: ${{ !cancelled() }}\n");
        let problems = no_always_where_needs_can_fail(&[vague]);
        assert_eq!(problems.len(), 1);
        assert!(problems[0].contains("say which results it runs after"), "{problems:?}");
    }

    #[test]
    fn one_toolchain_pin_for_ci_and_developers() {
        let problems = one_toolchain_pin(&now(), &Repository::here());
        assert!(problems.is_empty(), "{}", problems.join("\n"));
        // Before: no pin, and a rust-version nothing checked.
        let before = one_toolchain_pin(&before(), &repository(None, "1.89"));
        assert!(before[0].starts_with("rust-toolchain.toml: missing"), "{before:?}");
        let drift = one_toolchain_pin(&[], &repository(Some(TOOLCHAIN), "1.89"));
        assert!(
            drift[0].contains("rust-version is 1.89, but the toolchain pin is 1.95.0"),
            "{drift:?}"
        );
        assert!(one_toolchain_pin(&[], &repository(Some(TOOLCHAIN), "1.95")).is_empty());
        let stable = toolchain_pin("[toolchain]\nchannel = \"stable\"\n").unwrap_err();
        assert!(stable.contains("`stable` moves"), "{stable}");
        let bare = toolchain_pin("[toolchain]\nchannel = \"1.95.0\"\n").unwrap_err();
        assert!(bare.contains("lack `clippy`"), "{bare}");
        let other = workflow(
            "x.yml",
            "jobs:\n  a:\n    steps:\n      - uses: dtolnay/rust-toolchain@x\n        with:\n          toolchain: 1.80\n",
        );
        let problems = one_toolchain_pin(&[other], &repository(Some(TOOLCHAIN), "1.95"));
        assert_eq!(problems.len(), 2, "{problems:?}");
    }

    #[test]
    fn label_events_start_work_only_for_the_mode_labels() {
        let before = holds_now_and_failed_before(label_events_are_gated);
        assert_mentions(&before, "job `lint` would run on every label change");
        assert_mentions(&before, "the concurrency group must give label events");
    }

    #[test]
    fn actions_are_pinned_by_sha_with_a_node24_release() {
        let before = holds_now_and_failed_before(actions_are_pinned);
        assert_mentions(
            &before,
            "`actions/checkout` v4.2.2 runs on the deprecated Node 20: use v5.0.0",
        );
        let loose = workflow(
            "x.yml",
            "jobs:\n  a:\n    steps:\n      - uses: actions/cache@v5\n      - uses: actions/cache@27d5ce7f107fe9357f9df03efb73ab90386fccae\n      - uses: ./local\n",
        );
        let problems = actions_are_pinned(&[loose]);
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].contains("pinned by a tag or branch"), "{problems:?}");
        assert!(problems[2].contains("needs its release as a `# vX.Y.Z` comment"), "{problems:?}");
    }

    #[test]
    fn nextest_is_the_pinned_version_in_every_job() {
        let before = holds_now_and_failed_before(nextest_is_pinned);
        assert!(
            before.iter().all(|p| p.contains("installs `cargo-nextest`: install `cargo-nextest@")),
            "{before:?}"
        );
        assert_eq!(before.len(), 4, "{before:?}");
    }

    #[test]
    fn runs_on_main_are_never_dropped() {
        let before = holds_now_and_failed_before(main_keeps_every_run);
        assert!(before[0].starts_with("ci.yml: line"), "{before:?}");
    }

    #[test]
    fn one_required_check_needs_every_job() {
        let before = holds_now_and_failed_before(one_required_check);
        assert!(before[0].contains("no `ci-result` job"), "{before:?}");
        let mut current = now();
        let ci = current.iter_mut().find(|w| w.file.ends_with("ci.yml")).unwrap();
        let text = ci.text.replace(
            "needs: [xtask, lint, unit, integration]",
            "needs: [xtask, unit, integration]",
        );
        let problems = one_required_check(&[workflow("ci.yml", &text)]);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("must need `lint`"), "{problems:?}");
    }

    #[test]
    fn the_shard_count_is_set_once() {
        let before = holds_now_and_failed_before(one_shard_list);
        assert_eq!(before.len(), 2, "both matrices listed their shards: {before:?}");
    }

    #[test]
    fn helpers() {
        assert!(glob("history-*", "history-native-1-attempt-1"));
        assert!(glob("junit-*-1", "junit-docker-1"));
        assert!(!glob("junit-native-*", "junit-docker-1"));
        assert_eq!(
            sample("history-${{ matrix.shard }}-attempt-${{ github.run_attempt }}"),
            "history-1-attempt-1"
        );
        assert_eq!(version("2.86.5"), Some((2, 86, 5)));
        assert_eq!(version("2.86"), None);
        assert!(squash("a\n  b   c").contains("a b c"));
    }
}
