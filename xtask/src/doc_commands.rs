//! The commands the docs tell people to run, checked like the workflows' steps: every
//! `cargo xtask` line in a runnable code block (fenced as `sh`, `bash`, `shell` or
//! `console`) of README.md and docs/**/*.md must be accepted by this binary's parser, so
//! a renamed task or flag breaks a test instead of a reader's first try. Blocks meant as
//! templates (`cargo xtask <task>`) are fenced as `text`.

use std::path::{Path, PathBuf};

use crate::workflows::{RunStep, check_step};

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

/// Every problem, `file: line N: ...`, and how many commands were checked.
pub fn check(files: &[PathBuf]) -> (Vec<String>, usize) {
    let mut checked = 0;
    let problems = crate::workflows::problems_in(files, |text| {
        let commands = commands(text);
        checked += commands.len();
        commands.iter().filter_map(check_step).collect()
    });
    (problems, checked)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_in_the_docs_is_one_this_parser_accepts() {
        let files = files(&crate::sys::paths::root());
        let (problems, checked) = check(&files);
        assert!(problems.is_empty(), "{}", problems.join("\n"));
        assert!(checked >= 20, "only {checked} commands found: is the extraction broken?");
    }

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

    #[test]
    fn a_renamed_flag_in_the_docs_is_caught() {
        let dir = std::env::temp_dir().join(format!("xtask-doc-commands-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("guide.md");
        std::fs::write(&file, "```sh\ncargo xtask test --skip-e2e\n```\n").unwrap();
        let (problems, checked) = check(std::slice::from_ref(&file));
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(checked, 1);
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0].contains("line 2: `cargo xtask test --skip-e2e`: unexpected argument"),
            "{problems:?}"
        );
    }
}
