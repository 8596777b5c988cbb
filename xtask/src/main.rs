//! `cargo xtask <task>`: the repository's automation, shared by CI and developers.
//! This file holds the command tree and dispatch only; each task lives in its module.

mod build_timings;
mod ci_compare;
mod ci_mode;
mod ci_report;
mod ci_result;
mod ci_scope;
mod cli;
mod config;
mod deps;
mod doc_commands;
mod github;
mod github_api;
mod history;
mod interrupts;
mod junit;
mod lint;
mod project;
mod requirements;
mod secrets;
mod services;
mod tally;
mod test;
mod timings;
mod workflows;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use project::{Exit, UserError};

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "Automation for this repository",
    version
)]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Generate a service config file from the layered sources in config/tasker/
    Config(config::Args),
    /// Find unused dependencies; remove them safely
    Deps(deps::DepsArgs),
    /// Run the whole test suite: unit, integration, doc, end-to-end (and Docker backend) tests
    Test(test::Args),
    /// Run the services natively or in Docker: up, down, status, logs, run, bench
    Services(cli::services::Args),
    /// The native CI pipeline: build, database, services, end-to-end tests, teardown
    CiNative(cli::ci::NativeArgs),
    /// The same pipeline with the services in Docker Compose (production-like)
    CiDocker(cli::ci::DockerArgs),
    /// The Docker backend's files and base image: generate, bootstrap
    Docker(cli::docker::Args),
    /// Build the service binaries and the end-to-end tests once, for CI shards
    CiArchive(cli::ci::ArchiveArgs),
    /// Build the xtask binary once for the other jobs of a CI run (with the GitHub API over TLS)
    CiBinary(cli::ci::BinaryArgs),
    /// Decide the integration-test mode (native, docker, both) from the GitHub event
    CiMode(ci_mode::Args),
    /// Compare the JUnit results of a native and a Docker run
    CiCompare(ci_compare::Args),
    /// Decide what a change must run, from the files it touches
    CiScope(ci_scope::Args),
    /// Summarise the run history: pass rates, timings per mode, flaky and slow tests, a chart
    CiReport(ci_report::Args),
    /// The check branch protection requires: every needed CI job passed or was skipped by design
    CiResult(ci_result::Args),
    /// Every check that needs no test run: fmt, clippy, deps, generated files, workflows
    Lint(lint::Args),
    /// Where a clean build's time goes: slowest units, crates built twice, critical path
    BuildTimings(build_timings::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(err) = project::ensure_right_checkout() {
        return report(err.into());
    }
    let result = match cli.task {
        Task::Config(args) => config::run(args),
        Task::Deps(args) => deps::run(args),
        Task::Test(args) => test::run(args),
        Task::Services(args) => cli::services::run(args),
        Task::CiNative(args) => cli::ci::native(args),
        Task::CiDocker(args) => cli::ci::docker(args),
        Task::Docker(args) => cli::docker::run(args),
        Task::CiArchive(args) => cli::ci::archive(args),
        Task::CiBinary(args) => cli::ci::binary(args),
        Task::CiMode(args) => ci_mode::run(args),
        Task::CiCompare(args) => ci_compare::run(args),
        Task::CiScope(args) => ci_scope::run(args),
        Task::CiReport(args) => ci_report::run(args),
        Task::CiResult(args) => ci_result::run(args),
        Task::Lint(args) => lint::run(args),
        Task::BuildTimings(args) => build_timings::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => report(err),
    }
}

/// Maps an error to its exit code: 2 for user mistakes (one line), the task's own code
/// for failures it already reported, 1 with the cause chain for everything else.
fn report(err: anyhow::Error) -> ExitCode {
    if let Some(Exit(code)) = err.downcast_ref::<Exit>() {
        return ExitCode::from(*code);
    }
    if let Some(user) = err.downcast_ref::<UserError>() {
        eprintln!("error: {user}");
        return ExitCode::from(2);
    }
    eprintln!("error: {err:#}");
    ExitCode::from(1)
}
