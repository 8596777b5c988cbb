//! The commands the docs tell people to run, checked like the workflows' steps: every
//! `cargo xtask` line in a runnable code block (fenced as `sh`, `bash`, `shell` or
//! `console`) of README.md and docs/**/*.md must be accepted by this binary's parser, so
//! a renamed task or flag breaks a test instead of a reader's first try. Blocks meant as
//! templates (`cargo xtask <task>`) are fenced as `text`.

use std::path::{Path, PathBuf};

use crate::ci::workflows::{RunStep, check_step};

const RUNNABLE: &[&str] = &["sh", "bash", "shell", "console"];

/// The `cargo xtask` command lines of the runnable blocks of a markdown text.
pub fn commands(text: &str) -> Vec<RunStep> {
    let mut found = Vec::new();
    let mut runnable: Option<bool> = None;
    let mut pending: Option<(usize, String)> = None;
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if let Some(info) = trimmed.strip_prefix("```") {
            runnable = match runnable {
                Some(_) => None,
                None => Some(RUNNABLE.contains(&info.trim())),
            };
            continue;
        }
        if runnable != Some(true) {
            continue;
        }
        // A line ending in `\` goes on.
        let (start, mut joined) = pending.take().unwrap_or((i + 1, String::new()));
        joined.push_str(trimmed.trim_start_matches("$ "));
        if let Some(head) = joined.strip_suffix('\\') {
            pending = Some((start, format!("{} ", head.trim_end())));
            continue;
        }
        if let Some(command) = xtask_call(&joined) {
            found.push(RunStep { line: start, command });
        }
    }
    found
}

/// The `cargo xtask ...` part of a shell line: after any `VAR=value` or `time` prefix,
/// before a comment, a pipe or the next command.
fn xtask_call(line: &str) -> Option<String> {
    let start = line.find("cargo xtask")?;
    let mut call = &line[start..];
    for end in [" #", " | ", " && ", " || ", "; "] {
        if let Some(at) = call.find(end) {
            call = &call[..at];
        }
    }
    Some(call.trim().to_string())
}

/// README.md and every markdown file under docs/.
pub fn files(root: &Path) -> Vec<PathBuf> {
    let mut files = crate::sys::fs::files_below(&root.join("docs"), "md");
    files.push(root.join("README.md"));
    files.sort();
    files
}

/// Every problem, `file: line N: ...`, and how many commands were checked; `tree` is the
/// command tree they must parse with (`Cli`'s, handed down by the caller).
pub fn check(files: &[PathBuf], tree: &clap::Command) -> (Vec<String>, usize) {
    let mut checked = 0;
    let problems = crate::ci::workflows::problems_in(files, |text| {
        let commands = commands(text);
        checked += commands.len();
        commands.iter().filter_map(|step| check_step(step, tree)).collect()
    });
    (problems, checked)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runnable_blocks_only_with_prefixes_comments_and_continuations_handled() {
        let text = "\
Intro `cargo xtask not-a-block`.

```sh
cargo xtask ci-native   # the main job
$ TASKER_X=1 time cargo xtask test -- merge | tee log
cargo xtask ci-native \\
  --partition hash:1/2
cargo build -p xtask
```

```text
cargo xtask <task>
```
";
        let found: Vec<(usize, String)> =
            commands(text).into_iter().map(|s| (s.line, s.command)).collect();
        assert_eq!(
            found,
            [
                (4, "cargo xtask ci-native".to_string()),
                (5, "cargo xtask test -- merge".to_string()),
                (6, "cargo xtask ci-native --partition hash:1/2".to_string()),
            ]
        );
    }
}
