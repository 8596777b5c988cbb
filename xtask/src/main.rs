//! `cargo xtask <task>`: the repository's automation, shared by CI and developers.
//! Parses the command line, runs the task (the library's [`xtask::cli`]) and maps the
//! outcome to the exit code. Nothing else.

use std::process::ExitCode;

use clap::Parser as _;

use xtask::sys::error::{Exit, UserError};

fn main() -> ExitCode {
    let cli = xtask::Cli::parse();
    if let Err(err) = xtask::sys::checkout::ensure_right_checkout() {
        return report(err.into());
    }
    match xtask::cli::run(cli) {
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
