//! `services run`: the supervisor. It starts a session, runs a command with the
//! services' URLs in its environment as a child it owns, and stops everything when the
//! command ends, fails or is interrupted; the command's exit code is its own.

use std::time::{Duration, Instant};

use super::{UpOptions, plan, state};
use crate::sys::{error, host, interrupts, process};
use crate::timings::Timings;

/// `services run`: a session that lives exactly as long as `command`.
pub fn run(options: &UpOptions, build: bool, command: &[String]) -> anyhow::Result<()> {
    interrupts::catch_interrupts();
    let _lock = state::StateLock::acquire(&options.state_dir)?;
    let program = &command[0];
    if program.contains('/') && !std::path::Path::new(program).exists()
        || !program.contains('/') && host::which(program).is_none()
    {
        crate::user_error!("cannot run `{program}`: no such program (is it on PATH?)");
    }
    if build {
        process::run_cargo(&plan::build_args(options.release))?;
        interrupts::check_interrupted()?;
    }
    let mut timings = Timings::default();
    let began = Instant::now();
    // Dropped on every way out of this function: the services stop.
    let session = super::up(options, &mut timings)?;
    let exports = super::write_exports(&session.state, false)?;
    eprintln!(
        "xtask: {} service(s) ready in {:.2}s; running `{}`",
        session.state.services.len(),
        began.elapsed().as_secs_f64(),
        command.join(" ")
    );
    let mut child = std::process::Command::new(program);
    child.args(&command[1..]).envs(exports);
    let status = process::run_owned(&mut child, Duration::from_secs(10));
    let report = session.teardown(interrupts::grace(Duration::from_secs(5)), false);
    eprintln!("xtask: stopped everything in {:.3}s", report.took.as_secs_f64());
    interrupts::check_interrupted()?;
    let status = status?;
    if !status.success() {
        eprintln!("error: `{}` failed ({status})", command.join(" "));
        return Err(error::Exit::of(status).into());
    }
    Ok(())
}
