//! The command tree of `cargo xtask`: one variant per task, whose `Args` (doc comments
//! are its `--help`) the task's module defines, and the dispatch to the task's `run`.
//! The command layers over the services (`services ...`, `ci-native` / `ci-docker` /
//! `ci-archive`, `docker ...`) parse their flags in `cli/` and call the library.

pub mod ci;
pub mod docker;
pub mod services;

use clap::{CommandFactory as _, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "Automation for this repository",
    version
)]
pub struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
pub enum Task {
    /// Generate a service config file from the layered sources in config/tasker/
    Config(crate::config::Args),
    /// Find unused dependencies; remove them safely
    Deps(xtask_deps::DepsArgs),
    /// Run the whole test suite: unit, integration, doc, end-to-end (and Docker backend) tests
    Test(crate::test::Args),
    /// Run the services natively or in Docker: up, down, status, logs, run, bench
    Services(services::Args),
    /// The native CI pipeline: build, database, services, end-to-end tests, teardown
    CiNative(ci::NativeArgs),
    /// The same pipeline with the services in Docker Compose (production-like)
    CiDocker(ci::DockerArgs),
    /// The Docker backend's files and base image: generate, bootstrap
    Docker(docker::Args),
    /// Build the service binaries and the end-to-end tests once, for CI shards
    CiArchive(ci::ArchiveArgs),
    /// Build the xtask binary once for the other jobs of a CI run (with the GitHub API over TLS)
    CiBinary(ci::BinaryArgs),
    /// Decide the integration-test mode (native, docker, both) from the GitHub event
    CiMode(crate::ci::mode::Args),
    /// Compare the JUnit results of a native and a Docker run
    CiCompare(crate::ci::compare::Args),
    /// Decide what a change must run, from the files it touches
    CiScope(crate::ci::scope::Args),
    /// Summarise the run history: pass rates, timings per mode, flaky and slow tests, a chart
    CiReport(crate::ci::report::Args),
    /// The check branch protection requires: every needed CI job passed or was skipped by design
    CiResult(crate::ci::result::Args),
    /// Every check that needs no test run: fmt, clippy, deps, generated files, workflows
    Lint(crate::lint::Args),
    /// Where a clean build's time goes: slowest units, crates built twice, critical path
    BuildTimings(crate::build_timings::Args),
}

/// Runs the task the command line names.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.task {
        Task::Config(args) => crate::config::run(args),
        Task::Deps(args) => xtask_deps::run(args, &crate::sys::paths::root()),
        Task::Test(args) => crate::test::run(args),
        Task::Services(args) => services::run(args),
        Task::CiNative(args) => ci::native(args),
        Task::CiDocker(args) => ci::docker(args),
        Task::Docker(args) => docker::run(args),
        Task::CiArchive(args) => ci::archive(args),
        Task::CiBinary(args) => ci::binary(args),
        Task::CiMode(args) => crate::ci::mode::run(args),
        Task::CiCompare(args) => crate::ci::compare::run(args),
        Task::CiScope(args) => crate::ci::scope::run(args),
        Task::CiReport(args) => crate::ci::report::run(args),
        Task::CiResult(args) => crate::ci::result::run(args),
        Task::Lint(args) => crate::lint::run(args, &Cli::command()),
        Task::BuildTimings(args) => crate::build_timings::run(args),
    }
}

/// The command lines the workflows and the docs hold, parsed with this tree: the checks
/// live below (`ci::workflows`, `doc_commands`) and take the tree as a parameter.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::ci::workflows::{RunStep, check_files, check_step, run_steps};

    #[test]
    fn the_repositorys_workflows_call_only_commands_this_parser_accepts_and_follow_the_rules() {
        let files = crate::sys::paths::workflow_files();
        assert!(files.len() >= 2, "the workflows are missing: {files:?}");
        let problems = check_files(&files, &Cli::command());
        assert!(problems.is_empty(), "{}", problems.join("\n"));
        let calls: usize =
            files.iter().map(|f| run_steps(&std::fs::read_to_string(f).unwrap()).0.len()).sum();
        assert!(calls >= 8, "only {calls} run steps found: is the extraction broken?");
    }

    #[test]
    fn a_renamed_flag_or_task_in_a_workflow_is_caught() {
        let step = |command: &str| RunStep { line: 7, command: command.to_string() };
        let tree = Cli::command();
        assert_eq!(
            check_step(
                &step("cargo xtask ci-native --partition hash:${{ matrix.shard }}/2"),
                &tree
            ),
            None
        );
        assert_eq!(
            check_step(
                &step("cargo xtask ci-native --without \"${{ needs.scope.outputs.without }}\""),
                &tree
            ),
            None
        );
        let err = check_step(&step("cargo xtask ci-native --shard 1/2"), &tree).unwrap();
        assert!(
            err.starts_with(
                "line 7: `cargo xtask ci-native --shard 1/2`: unexpected argument '--shard'"
            ),
            "{err}"
        );
        let err = check_step(&step("cargo xtask ci_native"), &tree).unwrap();
        assert!(err.contains("unrecognized subcommand 'ci_native'"), "{err}");
    }

    #[test]
    fn every_command_in_the_docs_is_one_this_parser_accepts() {
        let files = crate::doc_commands::files(&crate::sys::paths::root());
        let (problems, checked) = crate::doc_commands::check(&files, &Cli::command());
        assert!(problems.is_empty(), "{}", problems.join("\n"));
        assert!(checked >= 20, "only {checked} commands found: is the extraction broken?");
    }

    #[test]
    fn a_renamed_flag_in_the_docs_is_caught() {
        let dir = std::env::temp_dir().join(format!("xtask-doc-commands-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("guide.md");
        std::fs::write(&file, "```sh\ncargo xtask test --skip-e2e\n```\n").unwrap();
        let (problems, checked) =
            crate::doc_commands::check(std::slice::from_ref(&file), &Cli::command());
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(checked, 1);
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0].contains("line 2: `cargo xtask test --skip-e2e`: unexpected argument"),
            "{problems:?}"
        );
    }
}
