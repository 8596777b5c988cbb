//! `cargo xtask ci-native`, `ci-docker` and `ci-archive`: the CI pipeline
//! ([`crate::ci::pipeline`]) with one backend or the other, and its build for shards
//! ([`crate::ci::build`]). Only the command line lives here.

use std::path::PathBuf;

use crate::ci::{build, pipeline};
use crate::services::session::DEFAULT_TIMEOUT_SECS;
use crate::services::{Backend, manifest};
use crate::sys::paths;

use super::services::{Common, DockerFlags, Start};

#[derive(clap::Args)]
#[command(after_help = "\
Examples:
  cargo xtask ci-native                                everything
  cargo xtask ci-native --partition hash:1/2           one of two CI shards
  cargo xtask ci-native -- -E 'test(workflow)'         nextest arguments after --

Needs cargo-nextest, the PostgreSQL server (unless DATABASE_URL is set) and Ruby (for the
Ruby worker; `--without ruby-worker` leaves it out): missing ones are installed first
where xtask may (apt-get as root on Debian/Ubuntu, or in CI with passwordless sudo;
`cargo install --locked cargo-nextest@<pinned>`), else named with their install command.

JUnit: target/nextest/ci/junit.xml. Logs: <state-dir>/logs/; on failure, every service
log and the database log are copied to <state-dir>/ci-logs/. Timings:
<state-dir>/timings.json. The paths are printed at the end of every run.")]
pub struct NativeArgs {
    #[command(flatten)]
    run: RunArgs,
}

#[derive(clap::Args)]
#[command(after_help = "\
Examples:
  cargo xtask ci-docker                                everything, in containers
  cargo xtask ci-docker --offline                      local base images only (no pull)
  cargo xtask ci-docker -- -E 'test(workflow)'         nextest arguments after --

The images copy the binaries built on this machine; their base image matches this
machine's OS release (`cargo xtask docker bootstrap` builds it locally when no registry
is reachable). JUnit: target/nextest/ci/junit.xml. On failure, every container's log is
saved to <state-dir>/ci-logs/docker/. Timings: <state-dir>/timings.json.")]
pub struct DockerArgs {
    #[command(flatten)]
    run: RunArgs,
    #[command(flatten)]
    docker: DockerFlags,
}

/// What both pipelines take.
#[derive(clap::Args)]
struct RunArgs {
    /// Build and run with the release profile
    #[arg(long)]
    release: bool,
    /// Do not build: the service and test binaries exist already
    #[arg(long)]
    no_build: bool,
    /// Do not build: take the service files and the tests from DIR (`cargo xtask ci-archive`)
    #[arg(long, value_name = "DIR", conflicts_with = "no_build")]
    from_archive: Option<PathBuf>,
    /// Run one shard of the tests, e.g. hash:1/3 (passed to nextest)
    #[arg(long, value_name = "hash:M/N")]
    partition: Option<String>,
    /// Seconds to wait for the services to be ready (scaled by the CI multiplier)
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_TIMEOUT_SECS)]
    timeout: u64,
    /// Leave these services out, and their tests (what `cargo xtask ci-scope` suggests)
    #[arg(long, value_name = "NAME", num_args = 1..)]
    without: Vec<String>,
    /// Install nothing: a missing requirement (PostgreSQL, Ruby, cargo-nextest) is an
    /// error naming the command to run (also: TASKER_XTASK_NO_INSTALL=1)
    #[arg(long)]
    no_install: bool,
    #[command(flatten)]
    common: Common,
    /// Arguments for `cargo nextest run`
    #[arg(last = true, value_name = "NEXTEST_ARGS")]
    nextest_args: Vec<String>,
}

impl RunArgs {
    fn options(self, backend: Backend, docker: DockerFlags) -> pipeline::Options {
        if self.no_install {
            crate::requirements::forbid_installs();
        }
        let start = Start {
            only: Vec::new(),
            without: self.without,
            release: self.release,
            fixed_ports: false,
            timeout: self.timeout,
        };
        pipeline::Options {
            up: start.options(&self.common, backend, docker),
            no_build: self.no_build,
            from_archive: self.from_archive.map(paths::absolute),
            partition: self.partition,
            nextest_args: self.nextest_args,
        }
    }
}

pub fn native(args: NativeArgs) -> anyhow::Result<()> {
    pipeline::run(&args.run.options(Backend::Native, DockerFlags::default()))
}

pub fn docker(args: DockerArgs) -> anyhow::Result<()> {
    pipeline::run(&args.run.options(Backend::Docker, args.docker))
}

#[derive(clap::Args)]
#[command(after_help = "\
For sharding over CI runners: one job builds, uploads DIR, and each shard runs
`cargo xtask ci-native --from-archive DIR --partition hash:K/N` without compiling.

Example:
  cargo xtask ci-archive --output target/xtask/ci-archive")]
pub struct ArchiveArgs {
    /// Build the release profile
    #[arg(long)]
    release: bool,
    /// Where to write the archive (default: target/xtask/ci-archive)
    #[arg(long, value_name = "DIR")]
    output: Option<PathBuf>,
    /// The services manifest (default: config/services.toml)
    #[arg(long, value_name = "FILE")]
    manifest: Option<PathBuf>,
}

pub fn archive(args: ArchiveArgs) -> anyhow::Result<()> {
    let output =
        paths::absolute(args.output.unwrap_or_else(|| paths::xtask_dir().join("ci-archive")));
    let manifest_path = paths::absolute(args.manifest.unwrap_or_else(manifest::default_path));
    build::archive(&manifest_path, args.release, &output)
}

#[derive(clap::Args)]
#[command(after_help = "\
One job of a CI run builds it and uploads DIR/xtask; the jobs that run nothing but xtask
(mode, scope, compare, report, CI result, the shards) download it instead of compiling
xtask, and call it where a developer types `cargo xtask`. Artifacts lose the executable
bit: those jobs `chmod +x` it first.

Example:
  cargo xtask ci-binary --output target/xtask-bin")]
pub struct BinaryArgs {
    /// Where to put the binary (default: target/xtask-bin)
    #[arg(long, value_name = "DIR")]
    output: Option<PathBuf>,
}

pub fn binary(args: BinaryArgs) -> anyhow::Result<()> {
    let output =
        paths::absolute(args.output.unwrap_or_else(|| paths::target_dir().join("xtask-bin")));
    build::xtask_binary(&output)
}
