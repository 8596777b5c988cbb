//! `cargo xtask docker bootstrap | generate`: the Docker backend's files and base image,
//! for CI set-up and for work by hand. `ci-docker` does both itself when needed.

use crate::services::{self, manifest};
use crate::sys::error::Exit;
use crate::sys::paths;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Build the base image locally from this machine's apt sources (no registry needed)
    #[command(after_help = "\
The image matches this machine's OS release (/etc/os-release), so binaries built here run
in it, and carries what the services and the database need. Its tag encodes what went
into it; when that tag exists, nothing is done (--force rebuilds). Needs mmdebstrap,
which is installed with apt-get when running as root on Debian or Ubuntu.")]
    Bootstrap {
        /// Rebuild even when the image exists
        #[arg(long)]
        force: bool,
    },
    /// Write docker/docker-compose.test.yml and the Dockerfiles from config/services.toml
    #[command(after_help = "\
The files are generated: edit config/services.toml, then run this. `--check` reports
stale files (exit 1) and writes nothing; `cargo xtask test` runs that check.")]
    Generate {
        /// Only check that the committed files match the manifest
        #[arg(long)]
        check: bool,
    },
}

pub fn run(args: Args) -> anyhow::Result<()> {
    match args.command {
        Command::Bootstrap { force } => {
            let tag = services::bootstrap_base_image(force)?;
            println!("{tag}");
            Ok(())
        }
        Command::Generate { check } => {
            let manifest = manifest::load(&manifest::default_path())?;
            let dir = paths::root().join("docker");
            let changed = services::refresh_docker_files(&manifest, &dir, check)?;
            for path in &changed {
                let verb = if check { "stale" } else { "wrote" };
                eprintln!("{verb}: {}", paths::display_path(path));
            }
            if check && !changed.is_empty() {
                eprintln!(
                    "error: {} generated file(s) differ from {}: run `cargo xtask docker generate`",
                    changed.len(),
                    paths::display_path(&manifest.path)
                );
                return Err(Exit(1).into());
            }
            if changed.is_empty() {
                eprintln!(
                    "xtask: the {} files of {} are up to date",
                    services::DOCKER_COMPOSE_FILE,
                    paths::display_path(&dir)
                );
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The drift test: the committed Compose file and Dockerfiles are what the manifest
    /// generates.
    #[test]
    fn committed_docker_files_match_the_manifest() {
        let manifest = manifest::load(&manifest::default_path()).unwrap();
        let stale =
            services::refresh_docker_files(&manifest, &paths::root().join("docker"), true).unwrap();
        assert!(
            stale.is_empty(),
            "stale: {stale:?}: run `cargo xtask docker generate` and commit the result"
        );
    }
}
