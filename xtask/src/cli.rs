//! The command tree of `cargo xtask`: one variant per task, whose `Args` (doc comments
//! are its `--help`) the task's module defines, and the dispatch to the task's `run`.
//! The command layers over the services (`services ...`, `ci-native` / `ci-docker` /
//! `ci-archive`, `docker ...`) parse their flags in `cli/` and call the library.

pub mod ci;
pub mod docker;
pub mod services;

use clap::{Parser, Subcommand};

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
    CiMode(crate::ci_mode::Args),
    /// Compare the JUnit results of a native and a Docker run
    CiCompare(crate::ci_compare::Args),
    /// Decide what a change must run, from the files it touches
    CiScope(crate::ci_scope::Args),
    /// Summarise the run history: pass rates, timings per mode, flaky and slow tests, a chart
    CiReport(crate::ci_report::Args),
    /// The check branch protection requires: every needed CI job passed or was skipped by design
    CiResult(crate::ci_result::Args),
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
        Task::CiMode(args) => crate::ci_mode::run(args),
        Task::CiCompare(args) => crate::ci_compare::run(args),
        Task::CiScope(args) => crate::ci_scope::run(args),
        Task::CiReport(args) => crate::ci_report::run(args),
        Task::CiResult(args) => crate::ci_result::run(args),
        Task::Lint(args) => crate::lint::run(args),
        Task::BuildTimings(args) => crate::build_timings::run(args),
    }
}
