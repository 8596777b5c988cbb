//! `cargo xtask lint`: every check that needs no test run, in one command: formatting,
//! clippy with warnings denied, unused dependencies, the generated files (configs and
//! the Docker files), the `cargo xtask` command lines of the docs, xtask's own module
//! layers ([`crate::layers`]), and the GitHub workflows (their xtask command lines
//! against this parser, the rules that make them hold on GitHub, and the workflow
//! linters `zizmor` and `check-jsonschema` when installed). Every check runs; the task
//! fails when any did.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::sys::error::Exit;
use crate::sys::{interrupts, paths, process};

#[derive(clap::Args)]
#[command(after_help = "\
Checks, in order: cargo fmt --check; cargo clippy (all targets, warnings denied);
cargo xtask deps; cargo xtask config --all --check; cargo xtask docker generate --check;
the workflows (their xtask command lines, and the rules for re-runs, label events,
cancellations, concurrency, the required check and the pins: docs/ci.md, \"Rules the
workflows follow\"); the docs' cargo xtask command lines; xtask's module layers (no
import upward, no module cycle); zizmor and check-jsonschema on
.github/workflows (skipped, and said so, when not installed; --install-linters installs
the pinned versions with pip, --require-linters makes a missing one a failure).")]
pub struct Args {
    /// Fail when zizmor or check-jsonschema is not installed
    #[arg(long)]
    require_linters: bool,
    /// Install the missing workflow linters first (pinned versions, with pip)
    #[arg(long)]
    install_linters: bool,
}

/// The workflow linters, pinned: a new release's new findings arrive as a deliberate bump.
const LINTERS: &[(&str, &str)] =
    &[("zizmor", "zizmor==1.32.0"), ("check-jsonschema", "check-jsonschema==0.39.0")];

/// Installs the missing linters with pip (`python3 -m pip install --user` unless root).
fn install_linters() -> anyhow::Result<()> {
    let missing: Vec<&str> = LINTERS
        .iter()
        .filter(|(program, _)| crate::sys::host::which(program).is_none())
        .map(|(_, requirement)| *requirement)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("xtask: installing the workflow linters with pip: {}", missing.join(" "));
    let mut pip = Command::new("python3");
    pip.args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"]);
    if !crate::sys::host::is_root() {
        pip.arg("--user");
    }
    pip.args(&missing).stdin(std::process::Stdio::null());
    let status = process::run_owned(&mut pip, std::time::Duration::from_secs(10))?;
    interrupts::check_interrupted()?;
    if !status.success() {
        crate::user_error!("`python3 -m pip install {}` failed ({status})", missing.join(" "));
    }
    Ok(())
}

/// One check: a command line, or the workflow command check run in process.
enum Check {
    Command { name: &'static str, program: PathBuf, args: Vec<String> },
    Linter { name: &'static str, program: &'static str, args: Vec<String>, install: &'static str },
    WorkflowCommands,
    DocCommands,
    ModuleLayers,
}

fn checks() -> Vec<Check> {
    let cargo = PathBuf::from(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    let xtask = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("xtask"));
    let strings = |args: &[&str]| args.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    let workflows: Vec<String> =
        paths::workflow_files().iter().map(|p| p.display().to_string()).collect();
    let mut schema_args = strings(&["--builtin-schema", "vendor.github-workflows"]);
    schema_args.extend(workflows.iter().cloned());
    vec![
        Check::Command {
            name: "rustfmt",
            program: cargo.clone(),
            args: strings(&["fmt", "--all", "--check"]),
        },
        Check::Command {
            name: "clippy",
            program: cargo,
            args: strings(&[
                "clippy",
                "--workspace",
                "--all-targets",
                "--features",
                "tasker-core/test-services",
                "--quiet",
                "--",
                "-D",
                "warnings",
            ]),
        },
        Check::Command {
            name: "unused dependencies",
            program: xtask.clone(),
            args: strings(&["deps"]),
        },
        Check::Command {
            name: "generated configs",
            program: xtask.clone(),
            args: strings(&["config", "--all", "--check"]),
        },
        Check::Command {
            name: "generated Docker files",
            program: xtask,
            args: strings(&["docker", "generate", "--check"]),
        },
        Check::WorkflowCommands,
        Check::DocCommands,
        Check::ModuleLayers,
        Check::Linter {
            name: "zizmor",
            program: "zizmor",
            args: strings(&["--offline", "--no-progress", ".github/workflows"]),
            install: "pip install zizmor",
        },
        Check::Linter {
            name: "workflow schema",
            program: "check-jsonschema",
            args: schema_args,
            install: "pip install check-jsonschema",
        },
    ]
}

/// `tree` is the command tree (`Cli`'s) that the workflows' and the docs' command lines
/// must parse with: handed down, since the tree is the layer above.
pub fn run(args: Args, tree: &clap::Command) -> anyhow::Result<()> {
    interrupts::catch_interrupts();
    if args.install_linters {
        install_linters()?;
    }
    let mut failed: Vec<&str> = Vec::new();
    let mut skipped: Vec<String> = Vec::new();
    for check in checks() {
        let started = Instant::now();
        let (name, ok) = match check {
            Check::Command { name, program, args } => {
                eprintln!("==> {name}: {} {}", program.display(), args.join(" "));
                (name, run_command(&program, &args)?)
            }
            Check::Linter { name, program, args, install } => {
                if crate::sys::host::which(program).is_none() {
                    let note = format!("{name} ({program} is not installed: {install})");
                    eprintln!("==> {name}: skipped: {program} is not installed ({install})");
                    skipped.push(note);
                    continue;
                }
                eprintln!("==> {name}: {program} {}", args.join(" "));
                (name, run_command(Path::new(program), &args)?)
            }
            Check::WorkflowCommands => {
                eprintln!(
                    "==> workflows: every run step is an xtask call this parser accepts, and the rules hold"
                );
                let problems = crate::ci::workflows::check_files(&paths::workflow_files(), tree);
                for problem in &problems {
                    eprintln!("{problem}");
                }
                ("workflows", problems.is_empty())
            }
            Check::DocCommands => {
                eprintln!(
                    "==> doc commands: every cargo xtask line of a runnable block in README.md and docs/ parses"
                );
                let (problems, _) =
                    crate::doc_commands::check(&crate::doc_commands::files(&paths::root()), tree);
                for problem in &problems {
                    eprintln!("{problem}");
                }
                ("doc commands", problems.is_empty())
            }
            Check::ModuleLayers => {
                eprintln!(
                    "==> module layers: each xtask module imports only from its layer and the ones below, and no module cycle"
                );
                let problems = crate::layers::check_dir(&crate::layers::source_dir())?;
                for problem in &problems {
                    eprintln!("{problem}");
                }
                ("module layers", problems.is_empty())
            }
        };
        eprintln!(
            "    {} in {:.1}s",
            if ok { "ok" } else { "FAILED" },
            started.elapsed().as_secs_f64()
        );
        if !ok {
            failed.push(name);
        }
    }
    let skipped_note = match skipped.is_empty() {
        true => String::new(),
        false => format!("; skipped: {}", skipped.join(", ")),
    };
    if (args.require_linters || args.install_linters) && !skipped.is_empty() {
        eprintln!("error: --require-linters, and a workflow linter is missing{skipped_note}");
        return Err(Exit(1).into());
    }
    if failed.is_empty() {
        eprintln!("==> lint passed{skipped_note}");
        Ok(())
    } else {
        eprintln!("error: failing checks: {}{skipped_note}", failed.join(", "));
        Err(Exit(1).into())
    }
}

fn run_command(program: &Path, args: &[String]) -> anyhow::Result<bool> {
    let mut command = Command::new(program);
    command.args(args).current_dir(paths::root()).stdin(std::process::Stdio::null());
    let status = process::run_owned(&mut command, std::time::Duration::from_secs(10))?;
    interrupts::check_interrupted()?;
    Ok(status.success())
}
