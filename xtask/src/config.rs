//! `cargo xtask config`: merges layered TOML sources into the one file a service reads
//! (`TASKER_CONFIG_PATH`). For each context in order, `base/<context>.toml` and then
//! `environments/<env>/<context>.toml` (when it exists) are merged into the result.
//!
//! Reading, writing and `--check` live here; the merge itself is the pure function in
//! `merge.rs`; the `--check` diff is `sys::diff`.

mod merge;

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use toml_edit::DocumentMut;

use crate::sys::diff;
use crate::sys::error::{Exit, UserError};
use crate::sys::{fs, paths};
use merge::Layer;

/// The committed generated files, `config/tasker/generated/<name>.toml`. This is the one
/// list behind `--all`, `--all --check`, the freshness test and [`refresh_generated`].
pub const GENERATED: &[Generated] = &[
    Generated {
        name: "complete-test",
        contexts: &["common", "orchestration", "worker"],
        environment: "test",
    },
    Generated {
        name: "orchestration-test",
        contexts: &["common", "orchestration"],
        environment: "test",
    },
    Generated { name: "worker-test", contexts: &["common", "worker"], environment: "test" },
];

pub struct Generated {
    pub name: &'static str,
    pub contexts: &'static [&'static str],
    pub environment: &'static str,
}

/// Where the sources live, relative to the workspace root.
const DEFAULT_SOURCE_DIR: &str = "config/tasker";

#[derive(clap::Args)]
#[command(after_help = "\
Examples:
  cargo xtask config --all             regenerate every file in config/tasker/generated/
  cargo xtask config --all --check     exit 1 with a diff when one of them is stale
  cargo xtask config --context common --context orchestration --environment test \\
      --output /tmp/orchestration.toml")]
pub struct Args {
    /// A context to merge, in layering order (repeat: --context common --context worker)
    #[arg(long = "context", value_name = "NAME", required_unless_present = "all")]
    contexts: Vec<String>,
    /// The environment: a folder under <SOURCE_DIR>/environments/
    #[arg(long, value_name = "ENV", required_unless_present = "all")]
    environment: Option<String>,
    /// The file to write
    #[arg(long, value_name = "FILE", required_unless_present = "all")]
    output: Option<PathBuf>,
    /// The folder holding base/ and environments/ [default: config/tasker of the workspace]
    #[arg(long, value_name = "DIR")]
    source_dir: Option<PathBuf>,
    /// Regenerate every file under <SOURCE_DIR>/generated/ (the list in xtask/src/config.rs)
    #[arg(long, conflicts_with_all = ["contexts", "environment", "output"])]
    all: bool,
    /// Write nothing: exit 1 with a diff when an output is missing or out of date
    #[arg(long)]
    check: bool,
}

/// One output to produce, with the command that produces it (for headers and messages).
struct Job {
    contexts: Vec<String>,
    environment: String,
    source_dir: PathBuf,
    output: PathBuf,
    command: String,
}

/// An output whose content differs from what its sources generate.
struct Stale {
    output: PathBuf,
    diff: String,
    command: String,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let check = args.check;
    // Generate everything before writing anything: one bad source leaves every output as it was.
    let outputs = generate_all(jobs_from_args(args)?)?;
    if check {
        let stale = find_stale(&outputs)?;
        if stale.is_empty() {
            eprintln!("{} up to date", describe_count(outputs.len()));
            return Ok(());
        }
        for s in &stale {
            print!("{}", s.diff);
        }
        for s in &stale {
            eprintln!(
                "error: {} is out of date with its sources; regenerate it with `{}`",
                paths::display_path(&s.output),
                s.command
            );
        }
        return Err(Exit(1).into());
    }
    for (job, text) in &outputs {
        let shown = paths::display_path(&job.output);
        if write_if_changed(&job.output, text)? {
            eprintln!("wrote {shown}");
        } else {
            eprintln!("{shown} is up to date");
        }
    }
    Ok(())
}

/// Regenerates the committed files (the `--all` set) that are out of date and returns
/// the ones it rewrote. For tasks that start services from the generated files.
pub fn refresh_generated() -> anyhow::Result<Vec<PathBuf>> {
    let outputs = generate_all(all_jobs(&default_source_dir(), None))?;
    let mut written = Vec::new();
    for (job, text) in outputs {
        if write_if_changed(&job.output, &text)? {
            written.push(job.output);
        }
    }
    Ok(written)
}

/// The committed generated files (the `--all` set) that differ from their sources.
pub fn stale_generated() -> anyhow::Result<Vec<PathBuf>> {
    let outputs = generate_all(all_jobs(&default_source_dir(), None))?;
    Ok(find_stale(&outputs)?.into_iter().map(|stale| stale.output).collect())
}

fn default_source_dir() -> PathBuf {
    paths::root().join(DEFAULT_SOURCE_DIR)
}

fn jobs_from_args(args: Args) -> anyhow::Result<Vec<Job>> {
    // Paths given by the user are relative to where they stand; the default is the workspace's.
    let custom_source = args.source_dir.as_deref().map(absolute).transpose()?;
    let source_dir = custom_source.clone().unwrap_or_else(default_source_dir);
    let source_flag = custom_source.map(|dir| format!(" --source-dir {}", shown_for_shell(&dir)));
    if args.all {
        return Ok(all_jobs(&source_dir, source_flag.as_deref()));
    }
    let (Some(environment), Some(output)) = (args.environment, args.output) else {
        unreachable!("clap requires --environment and --output without --all")
    };
    let output = absolute(&output)?;
    let mut command = String::from("cargo xtask config");
    for context in &args.contexts {
        command.push_str(&format!(" --context {context}"));
    }
    command
        .push_str(&format!(" --environment {environment} --output {}", shown_for_shell(&output)));
    command.push_str(source_flag.as_deref().unwrap_or_default());
    let mut job = Job { contexts: args.contexts, environment, source_dir, output, command };
    // A file of the `--all` set, spelled out by hand, still gets the `--all` header, so
    // both ways of generating it agree and `--check` accepts either.
    if let Some(same) = all_jobs(&job.source_dir, source_flag.as_deref()).into_iter().find(|j| {
        (&j.output, &j.contexts, &j.environment) == (&job.output, &job.contexts, &job.environment)
    }) {
        job.command = same.command;
    }
    Ok(vec![job])
}

fn all_jobs(source_dir: &Path, source_flag: Option<&str>) -> Vec<Job> {
    let command = format!("cargo xtask config --all{}", source_flag.unwrap_or_default());
    GENERATED
        .iter()
        .map(|generated| Job {
            contexts: generated.contexts.iter().map(|c| c.to_string()).collect(),
            environment: generated.environment.to_owned(),
            source_dir: source_dir.to_owned(),
            output: source_dir.join("generated").join(format!("{}.toml", generated.name)),
            command: command.clone(),
        })
        .collect()
}

fn generate_all(jobs: Vec<Job>) -> anyhow::Result<Vec<(Job, String)>> {
    jobs.into_iter()
        .map(|job| {
            let text = generate(&job)?;
            Ok((job, text))
        })
        .collect()
}

/// Reads a job's sources, merges them and renders the output text.
fn generate(job: &Job) -> anyhow::Result<String> {
    if !job.source_dir.is_dir() {
        return Err(UserError(format!(
            "source folder {} does not exist; give --source-dir the folder holding base/ and environments/",
            paths::display_path(&job.source_dir)
        ))
        .into());
    }
    let env_dir = job.source_dir.join("environments").join(&job.environment);
    let environments = subdirectories(&job.source_dir.join("environments"))?;
    if !environments.contains(&job.environment) {
        return Err(UserError(format!(
            "unknown environment `{}`: {} does not exist (environments: {})",
            job.environment,
            paths::display_path(&env_dir),
            list_or_none(&environments)
        ))
        .into());
    }
    let mut layers = Vec::new();
    for context in &job.contexts {
        let base = job.source_dir.join("base").join(format!("{context}.toml"));
        match read_layer(&base)? {
            Some(layer) => layers.push(layer),
            None => {
                let contexts = toml_stems(&job.source_dir.join("base"))?;
                return Err(UserError(format!(
                    "missing base file {} for context `{context}` (contexts with a base file: {})",
                    paths::display_path(&base),
                    list_or_none(&contexts)
                ))
                .into());
            }
        }
        if let Some(layer) = read_layer(&env_dir.join(format!("{context}.toml")))? {
            layers.push(layer);
        }
    }
    let merged = merge::merge(&layers).map_err(|conflict| UserError(conflict.to_string()))?;
    let sources: Vec<&str> = layers.iter().map(|layer| layer.name.as_str()).collect();
    Ok(render(&job.command, &sources, &merged))
}

/// The output: a header (generated, how to regenerate, from what), then the merged document.
fn render(command: &str, sources: &[&str], merged: &DocumentMut) -> String {
    let mut out = String::from(
        "# GENERATED FILE - DO NOT EDIT. Edit the sources listed below, then regenerate\n\
         # from the workspace root with:\n",
    );
    out.push_str(&format!("#   {command}\n# Sources, merged in this order:\n"));
    for source in sources {
        out.push_str(&format!("#   {source}\n"));
    }
    out.push('\n');
    out.push_str(merged.to_string().trim_start_matches('\n').trim_end());
    out.push('\n');
    out
}

/// Parses one source file; `None` when it does not exist.
fn read_layer(path: &Path) -> anyhow::Result<Option<Layer>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err).with_context(|| format!("reading {}", path.display())),
    };
    let name = paths::display_path(path);
    let doc = text.parse::<DocumentMut>().map_err(|err| {
        let (line, column) = err.span().map_or((1, 1), |span| line_column(&text, span.start));
        let message = err.message().trim().replace('\n', "; ");
        UserError(format!("{name}:{line}:{column}: malformed TOML: {message}"))
    })?;
    Ok(Some(Layer { name, doc }))
}

/// 1-based line and column (in characters) of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

fn find_stale(outputs: &[(Job, String)]) -> anyhow::Result<Vec<Stale>> {
    let mut stale = Vec::new();
    for (job, expected) in outputs {
        let shown = paths::display_path(&job.output);
        let (current, label) = match std::fs::read_to_string(&job.output) {
            Ok(current) => (current, format!("{shown} (current)")),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                (String::new(), format!("{shown} (missing)"))
            }
            Err(err) => return Err(err).with_context(|| format!("reading {shown}")),
        };
        if current != *expected {
            let diff = diff::unified(&current, expected, &label, &format!("{shown} (generated)"));
            stale.push(Stale { output: job.output.clone(), diff, command: job.command.clone() });
        }
    }
    Ok(stale)
}

/// Writes `text` unless the file already holds it; true when it wrote.
fn write_if_changed(path: &Path, text: &str) -> anyhow::Result<bool> {
    if std::fs::read_to_string(path).is_ok_and(|current| current == text) {
        return Ok(false);
    }
    fs::write_atomic(path, text)?;
    Ok(true)
}

fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("resolving {}", path.display()))
}

/// A path for a command line a user will copy: workspace-relative when inside it, quoted
/// when it holds characters a shell would split or expand.
fn shown_for_shell(path: &Path) -> String {
    let shown = paths::display_path(path);
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-+=:,@".contains(c);
    if shown.chars().all(plain) { shown } else { format!("'{}'", shown.replace('\'', r"'\''")) }
}

fn subdirectories(dir: &Path) -> anyhow::Result<Vec<String>> {
    list_dir(dir, |path| path.is_dir().then(|| path.file_name()).flatten())
}

fn toml_stems(dir: &Path) -> anyhow::Result<Vec<String>> {
    list_dir(dir, |path| {
        (path.extension()? == "toml" && path.is_file()).then(|| path.file_stem()).flatten()
    })
}

/// Sorted names of the entries of `dir` that `pick` names; empty when `dir` is missing.
fn list_dir(
    dir: &Path,
    pick: impl Fn(&Path) -> Option<&std::ffi::OsStr>,
) -> anyhow::Result<Vec<String>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => return Err(err).with_context(|| format!("listing {}", dir.display())),
    };
    let mut names = Vec::new();
    for entry in entries {
        let path = entry.with_context(|| format!("listing {}", dir.display()))?.path();
        if let Some(name) = pick(&path) {
            names.push(name.to_string_lossy().into_owned());
        }
    }
    names.sort();
    Ok(names)
}

fn list_or_none(names: &[String]) -> String {
    if names.is_empty() { "none".to_owned() } else { names.join(", ") }
}

fn describe_count(n: usize) -> String {
    if n == 1 { "1 file".to_owned() } else { format!("{n} files") }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed generated files match their sources. When this fails, the message
    /// shows the difference and the command that fixes it.
    #[test]
    fn committed_generated_files_are_up_to_date() {
        let outputs = generate_all(all_jobs(&default_source_dir(), None)).unwrap();
        let stale = find_stale(&outputs).unwrap();
        let diffs: String = stale.iter().map(|s| s.diff.as_str()).collect();
        let fixes: String = stale
            .iter()
            .map(|s| {
                let shown = paths::display_path(&s.output);
                format!("{shown} is out of date with its sources: run `{}`\n", s.command)
            })
            .collect();
        assert!(stale.is_empty(), "generated config is stale:\n{diffs}\n{fixes}");
    }

    #[test]
    fn the_generated_list_covers_the_generated_folder() {
        let on_disk = toml_stems(&default_source_dir().join("generated")).unwrap();
        let mut declared: Vec<String> = GENERATED.iter().map(|g| g.name.to_owned()).collect();
        declared.sort();
        assert_eq!(on_disk, declared, "every file in config/tasker/generated/ is in GENERATED");
    }

    /// A scratch folder with a source tree, removed on drop.
    struct Sources(PathBuf);

    impl Sources {
        fn new(test: &str) -> Sources {
            let dir =
                std::env::temp_dir().join(format!("xtask-config-{test}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            let sources = Sources(dir);
            sources.write("base/common.toml", "[database]\nurl = \"${DATABASE_URL}\"\npool = 10\n");
            sources.write("base/orchestration.toml", "[web]\nbind = \"${BIND:-0.0.0.0:8080}\"\n");
            sources.write("base/worker.toml", "[worker]\nthreads = 4\n");
            sources.write("environments/test/common.toml", "[database]\npool = 2\n");
            sources.write("environments/production/.keep", "");
            sources
        }

        fn write(&self, relative: &str, text: &str) {
            let path = self.0.join(relative);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }

        fn args(&self, contexts: &[&str], environment: &str, check: bool) -> Args {
            Args {
                contexts: contexts.iter().map(|c| c.to_string()).collect(),
                environment: Some(environment.to_owned()),
                output: Some(self.output()),
                source_dir: Some(self.0.clone()),
                all: false,
                check,
            }
        }

        fn output(&self) -> PathBuf {
            self.0.join("out/merged.toml")
        }

        fn all_args(&self, check: bool) -> Args {
            Args {
                contexts: Vec::new(),
                environment: None,
                output: None,
                source_dir: Some(self.0.clone()),
                all: true,
                check,
            }
        }
    }

    impl Drop for Sources {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn user_error(result: anyhow::Result<()>) -> String {
        let err = result.expect_err("expected an error");
        err.downcast_ref::<UserError>()
            .unwrap_or_else(|| panic!("expected a user error (exit 2), got: {err:#}"))
            .to_string()
    }

    fn exit_code(result: anyhow::Result<()>) -> Option<u8> {
        result.err().map(|err| err.downcast_ref::<Exit>().expect("expected an exit code").0)
    }

    #[test]
    fn writes_the_merged_file_with_a_header() {
        let sources = Sources::new("writes");
        run(sources.args(&["common", "worker"], "test", false)).unwrap();
        let text = std::fs::read_to_string(sources.output()).unwrap();
        assert!(text.starts_with("# GENERATED FILE - DO NOT EDIT."), "{text}");
        assert!(
            text.contains("#   cargo xtask config --context common --context worker"),
            "{text}"
        );
        let base = paths::display_path(&sources.0.join("base/common.toml"));
        let env = paths::display_path(&sources.0.join("environments/test/common.toml"));
        assert!(text.contains(&format!("#   {base}\n#   {env}\n")), "{text}");
        let doc: DocumentMut = text.parse().unwrap();
        assert_eq!(doc["database"]["pool"].as_integer(), Some(2));
        assert_eq!(doc["database"]["url"].as_str(), Some("${DATABASE_URL}"));
        assert_eq!(doc["worker"]["threads"].as_integer(), Some(4));
    }

    #[test]
    fn check_passes_on_fresh_and_fails_on_stale_output_without_writing() {
        let sources = Sources::new("check");
        assert_eq!(exit_code(run(sources.args(&["common"], "test", true))), Some(1));
        assert!(!sources.output().exists(), "--check must not write");

        run(sources.args(&["common"], "test", false)).unwrap();
        assert_eq!(exit_code(run(sources.args(&["common"], "test", true))), None);

        sources.write("base/common.toml", "[database]\nurl = \"${DATABASE_URL}\"\nssl = true\n");
        let before = std::fs::read_to_string(sources.output()).unwrap();
        assert_eq!(exit_code(run(sources.args(&["common"], "test", true))), Some(1));
        assert_eq!(std::fs::read_to_string(sources.output()).unwrap(), before);
    }

    #[test]
    fn stale_output_is_reported_with_a_diff_and_the_fix_command() {
        let sources = Sources::new("stale");
        run(sources.all_args(false)).unwrap();
        assert_eq!(exit_code(run(sources.all_args(true))), None);
        // Editing a source without regenerating makes exactly the files using it stale.
        sources.write("base/worker.toml", "[worker]\nthreads = 8\n");
        let outputs = generate_all(jobs_from_args(sources.all_args(true)).unwrap()).unwrap();
        let stale = find_stale(&outputs).unwrap();
        let names: Vec<_> = stale.iter().map(|s| s.output.file_name().unwrap()).collect();
        assert_eq!(names, ["complete-test.toml", "worker-test.toml"]);
        let shown = shown_for_shell(&sources.0);
        assert_eq!(stale[0].command, format!("cargo xtask config --all --source-dir {shown}"));
        assert!(stale[0].diff.contains("\n-threads = 4\n+threads = 8\n"), "{}", stale[0].diff);
    }

    #[test]
    fn a_generated_file_spelled_out_by_hand_matches_its_all_version() {
        let sources = Sources::new("by-hand");
        run(sources.all_args(false)).unwrap();
        let mut args = sources.args(&["common", "worker"], "test", true);
        args.output = Some(sources.0.join("generated/worker-test.toml"));
        assert_eq!(exit_code(run(args)), None, "same contents, same header");
    }

    #[test]
    fn unknown_environment_lists_the_existing_ones() {
        let sources = Sources::new("unknown-env");
        let message = user_error(run(sources.args(&["common"], "staging", false)));
        assert!(message.starts_with("unknown environment `staging`"), "{message}");
        assert!(message.ends_with("(environments: production, test)"), "{message}");
        assert!(!sources.output().exists());
    }

    #[test]
    fn missing_source_folder_is_named() {
        let sources = Sources::new("missing-source");
        let mut args = sources.args(&["common"], "test", false);
        args.source_dir = Some(sources.0.join("nowhere"));
        let message = user_error(run(args));
        let shown = paths::display_path(&sources.0.join("nowhere"));
        assert!(message.starts_with(&format!("source folder {shown} does not exist")), "{message}");
        assert!(!sources.output().exists());
    }

    #[test]
    fn missing_base_file_is_named() {
        let sources = Sources::new("missing-base");
        let message = user_error(run(sources.args(&["common", "metrics"], "test", false)));
        let base = paths::display_path(&sources.0.join("base/metrics.toml"));
        assert!(message.starts_with(&format!("missing base file {base} for context")), "{message}");
        assert!(
            message.contains("(contexts with a base file: common, orchestration, worker)"),
            "{message}"
        );
        assert!(!sources.output().exists());
    }

    #[test]
    fn malformed_toml_is_reported_with_file_line_and_column() {
        let sources = Sources::new("malformed");
        sources.write("environments/test/common.toml", "[database]\npool = 2\nbroken = = 3\n");
        let message = user_error(run(sources.args(&["common"], "test", false)));
        let env = paths::display_path(&sources.0.join("environments/test/common.toml"));
        assert!(message.starts_with(&format!("{env}:3:10: malformed TOML: ")), "{message}");
        assert!(!message.contains('\n'), "one line: {message}");
        assert!(!sources.output().exists());
    }

    #[test]
    fn type_conflict_names_the_key_and_both_files_and_writes_nothing() {
        let sources = Sources::new("conflict");
        run(sources.all_args(false)).unwrap();
        let before = std::fs::read_to_string(sources.0.join("generated/worker-test.toml")).unwrap();
        sources.write("base/worker.toml", "database = \"flat\"\n");
        let message = user_error(run(sources.all_args(false)));
        let base = paths::display_path(&sources.0.join("base/common.toml"));
        let worker = paths::display_path(&sources.0.join("base/worker.toml"));
        assert_eq!(
            message,
            format!(
                "type conflict at `database`: a table in {base} but a string in {worker}; \
                 give both the same type"
            )
        );
        let after = std::fs::read_to_string(sources.0.join("generated/worker-test.toml")).unwrap();
        assert_eq!(before, after);
    }

    #[test]
    fn line_column_counts_from_one() {
        assert_eq!(line_column("ab\ncd", 0), (1, 1));
        assert_eq!(line_column("ab\ncd", 4), (2, 2));
        assert_eq!(line_column("é\nx", 3), (2, 1));
    }
}
