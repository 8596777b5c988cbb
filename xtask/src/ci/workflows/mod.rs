//! The GitHub workflows, checked here where no runner exists: every `run:` step is one
//! xtask call this binary's own command parser accepts, so a renamed task or flag fails
//! a test instead of the next pull request; and the workflows follow the rules that make
//! them hold on GitHub ([`rules`]: re-runs, label events, cancellations, pins).

pub mod rules;
pub mod yaml;

use std::path::PathBuf;

/// A `run:` step of a workflow file.
#[derive(Debug, PartialEq, Eq)]
pub struct RunStep {
    pub line: usize,
    pub command: String,
}

/// The `run:` steps of a workflow's text; multi-line ones are problems (the logic they
/// would hold belongs in xtask, where it is tested).
pub fn run_steps(text: &str) -> (Vec<RunStep>, Vec<String>) {
    let mut steps = Vec::new();
    let mut problems = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start().trim_start_matches("- ").trim_start();
        let Some(value) = trimmed.strip_prefix("run:") else { continue };
        let value = value.trim();
        if value.is_empty() || value.starts_with('|') || value.starts_with('>') {
            problems.push(format!(
                "line {}: a multi-line run step; steps are one `cargo xtask` call (logic goes into xtask, where it is tested)",
                i + 1
            ));
            continue;
        }
        steps.push(RunStep { line: i + 1, command: value.to_string() });
    }
    (steps, problems)
}

/// The words of a command line, with `${{ ... }}` expressions replaced by a sample value
/// (`1`: valid wherever this repository's workflows use one) and shell quotes removed.
pub fn words(command: &str) -> Vec<String> {
    let text = rules::with_samples(command);
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quote: Option<char> = None;
    let mut in_word = false;
    for c in text.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

/// Where the jobs that download the run's xtask binary (`cargo xtask ci-binary`) put
/// it; they call it where a developer types `cargo xtask`.
pub const PREBUILT: &str = "target/xtask-bin/xtask";

/// Why a run step is not a `cargo xtask` call that `tree` (the command tree, `Cli`'s
/// `clap::Command`, handed down by the caller) accepts, if it is not.
pub fn check_step(step: &RunStep, tree: &clap::Command) -> Option<String> {
    let words = words(&step.command);
    if words.len() < 2 || words[0] != "cargo" || words[1] != "xtask" {
        return Some(format!(
            "line {}: `{}` is not a `cargo xtask` call; CI and developers must run the same code",
            step.line, step.command
        ));
    }
    parse_args(step, &words[2..], tree)
}

/// [`check_step`] for a workflow, which may also run the run's prebuilt binary in place
/// of `cargo xtask` and make it executable first (artifacts drop the mode).
pub fn check_workflow_step(step: &RunStep, tree: &clap::Command) -> Option<String> {
    let words = words(&step.command);
    if words == ["chmod", "+x", PREBUILT] {
        return None;
    }
    match words.first() {
        Some(first) if first == PREBUILT => parse_args(step, &words[1..], tree),
        _ => check_step(step, tree).map(|why| {
            why.replace(
                "is not a `cargo xtask` call",
                &format!("is neither `cargo xtask` nor {PREBUILT}"),
            )
        }),
    }
}

fn parse_args(step: &RunStep, args: &[String], tree: &clap::Command) -> Option<String> {
    let argv = std::iter::once("cargo xtask".to_string()).chain(args.iter().cloned());
    match tree.clone().try_get_matches_from(argv) {
        Ok(_) => None,
        Err(err) => {
            let message = err.to_string();
            let first = message.lines().next().unwrap_or_default().trim_start_matches("error: ");
            Some(format!("line {}: `{}`: {first}", step.line, step.command))
        }
    }
}

/// Every problem of the given workflow files, `file: line N: ...`: their run steps
/// (parsed with `tree`), then the rules.
pub fn check_files(files: &[PathBuf], tree: &clap::Command) -> Vec<String> {
    if files.is_empty() {
        return vec!["no workflow files in .github/workflows".to_string()];
    }
    let mut problems = problems_in(files, |text| {
        let (steps, mut problems) = run_steps(text);
        problems.extend(steps.iter().filter_map(|step| check_workflow_step(step, tree)));
        problems
    });
    let mut workflows = Vec::new();
    for file in files {
        match rules::load(file) {
            Ok(workflow) => workflows.push(workflow),
            Err(problem) => problems.push(problem),
        }
    }
    problems.extend(rules::check(&workflows, &rules::Repository::here()));
    problems
}

/// Runs `check` on the text of each file: its problems, and the files that cannot be
/// read, as `file: problem`.
pub fn problems_in(files: &[PathBuf], mut check: impl FnMut(&str) -> Vec<String>) -> Vec<String> {
    let mut problems = Vec::new();
    for file in files {
        let shown = crate::sys::paths::display_path(file);
        match std::fs::read_to_string(file) {
            Ok(text) => problems.extend(check(&text).into_iter().map(|p| format!("{shown}: {p}"))),
            Err(err) => problems.push(format!("{shown}: cannot read: {err}")),
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A command tree of the shape of `Cli`'s, for the checks' own logic; that every real
    /// workflow step and every renamed flag is caught with the real tree is tested where
    /// the tree lives (`cli.rs`).
    fn tree() -> clap::Command {
        clap::Command::new("cargo xtask")
            .subcommand(clap::Command::new("ci-mode"))
            .subcommand(clap::Command::new("lint"))
    }

    #[test]
    fn the_prebuilt_binary_stands_for_cargo_xtask_in_workflows_only() {
        let step = |command: &str| RunStep { line: 3, command: command.to_string() };
        let tree = tree();
        assert_eq!(check_workflow_step(&step("chmod +x target/xtask-bin/xtask"), &tree), None);
        assert_eq!(check_workflow_step(&step("target/xtask-bin/xtask ci-mode"), &tree), None);
        assert_eq!(check_workflow_step(&step("cargo xtask lint"), &tree), None);
        let err = check_workflow_step(&step("target/xtask-bin/xtask ci-mood"), &tree).unwrap();
        assert!(err.contains("unrecognized subcommand 'ci-mood'"), "{err}");
        let err = check_workflow_step(&step("chmod +x somewhere/else"), &tree).unwrap();
        assert!(err.contains("is neither `cargo xtask` nor target/xtask-bin/xtask"), "{err}");
        // The docs show what a developer types: `cargo xtask`, never the CI binary.
        assert!(check_step(&step("target/xtask-bin/xtask ci-mode"), &tree).is_some());
        let err = check_step(&step("npm test"), &tree).unwrap();
        assert!(err.contains("is not a `cargo xtask` call"), "{err}");
    }

    #[test]
    fn multi_line_steps_are_refused() {
        let text = "jobs:\n  a:\n    steps:\n      - run: cargo xtask lint\n      - name: x\n        run: |\n          echo hi\n";
        let (steps, problems) = run_steps(text);
        assert_eq!(steps, vec![RunStep { line: 4, command: "cargo xtask lint".into() }]);
        assert_eq!(problems.len(), 1);
        assert!(problems[0].starts_with("line 6: a multi-line run step"), "{problems:?}");
    }

    #[test]
    fn expressions_and_quotes_become_words() {
        assert_eq!(
            words("cargo xtask ci-compare 'native dir/junit.xml' \"${{ x }}\" a${{ y }}b"),
            vec!["cargo", "xtask", "ci-compare", "native dir/junit.xml", "1", "a1b"]
        );
        assert_eq!(words("a \"\" b"), vec!["a", "", "b"]);
    }
}
