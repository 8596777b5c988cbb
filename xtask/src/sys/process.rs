//! Processes this program owns. Children it waits for ([`run_owned`]: cargo, the tests,
//! linters, installs) run in their own process group, die with it (`PR_SET_PDEATHSIG`)
//! and get a signal passed on once. Processes that outlive the call (a session's
//! services and database) are recorded by [`Identity`] (pid plus start time, so a
//! reused pid is never mistaken for ours), found again by a marker in their
//! environment, and stopped as whole process groups.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::Context as _;

use super::error::Exit;
use super::interrupts;

/// A process as a record keeps it: its pid, process group and kernel start time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Identity {
    pub pid: u32,
    pub pgid: u32,
    /// Clock ticks since boot (field 22 of `/proc/<pid>/stat`).
    pub start_time: u64,
}

impl Identity {
    /// The identity of a process we just spawned into its own group.
    pub fn of_group_leader(pid: u32) -> Option<Identity> {
        Some(Identity { pid, pgid: pid, start_time: start_time(pid)? })
    }

    /// Any live process (its group as recorded is its own process group).
    pub fn of_process(pid: u32) -> Option<Identity> {
        let stat = stat(pid)?;
        Some(Identity { pid, pgid: stat.pgrp, start_time: stat.start_time })
    }

    /// True when `pid` is alive and is still the process we started (not a reused pid).
    pub fn is_ours_and_alive(&self) -> bool {
        reap(self.pid);
        matches!(stat(self.pid), Some(s) if s.start_time == self.start_time && s.state != 'Z')
    }
}

struct Stat {
    state: char,
    pgrp: u32,
    start_time: u64,
}

/// Parses `/proc/<pid>/stat`; the command name may hold spaces and parentheses, so the
/// fields are counted from the last `)`.
fn parse_stat(text: &str) -> Option<Stat> {
    let after = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // after ")" come field 3 (state), 4 (ppid), 5 (pgrp) ... 22 (starttime).
    Some(Stat {
        state: fields.first()?.chars().next()?,
        pgrp: fields.get(2)?.parse().ok()?,
        start_time: fields.get(19)?.parse().ok()?,
    })
}

fn stat(pid: u32) -> Option<Stat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

pub fn start_time(pid: u32) -> Option<u64> {
    stat(pid).map(|s| s.start_time)
}

/// Collects the exit status of `pid` if it is our child and has exited, so it does not
/// linger as a zombie that still looks alive. Harmless for other processes.
pub fn reap(pid: u32) {
    let mut status = 0;
    // SAFETY: waitpid with WNOHANG only inspects the child table.
    unsafe { libc::waitpid(pid as libc::pid_t, &mut status, libc::WNOHANG) };
}

/// Live (non-zombie) members of process group `pgid`.
pub fn group_members(pgid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| matches!(stat(*pid), Some(s) if s.pgrp == pgid && s.state != 'Z'))
        .collect()
}

/// True when the group of `id` still has live members that are ours: either the
/// leader itself (checked by start time), or, once the leader is gone, its group
/// (Linux never hands out a pid that is still some group's id, so a group whose leader
/// died can only hold the leader's descendants).
pub fn group_is_ours_and_alive(id: &Identity) -> bool {
    reap(id.pid);
    match stat(id.pid) {
        Some(s) if s.state != 'Z' => s.start_time == id.start_time,
        _ => !group_members(id.pgid).is_empty(),
    }
}

/// Sends `signal` to the whole group of `id`, after checking it is still ours.
/// Returns false when nothing of ours was left to signal.
pub fn signal_group(id: &Identity, signal: libc::c_int) -> bool {
    if !group_is_ours_and_alive(id) {
        return false;
    }
    // SAFETY: plain kill(2) on a process group we verified above.
    unsafe { libc::kill(-(id.pgid as libc::pid_t), signal) == 0 }
}

/// Sends `signal` to the single process `id` (e.g. the PostgreSQL postmaster, which
/// shuts its own children down), after checking it is still ours.
pub fn signal_process(id: &Identity, signal: libc::c_int) -> bool {
    if !id.is_ours_and_alive() {
        return false;
    }
    // SAFETY: plain kill(2) on a process we verified above.
    unsafe { libc::kill(id.pid as libc::pid_t, signal) == 0 }
}

/// Gives `cmd` the environment variable `var=value`, by which [`marked`] finds it and its
/// children again when no record of them is left.
pub fn mark(cmd: &mut Command, var: &str, value: &Path) {
    cmd.env(var, value);
}

/// The process groups (by their leader, or a member when the leader is gone) whose
/// processes carry the marker `var=value`. Only processes we may read are seen: ours.
pub fn marked(var: &str, value: &Path) -> Vec<Identity> {
    let wanted = format!("{var}={}", value.display());
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    let mut found: Vec<Identity> = Vec::new();
    for pid in entries.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok()) {
        if pid == me {
            continue;
        }
        let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else { continue };
        if !environ.split(|b| *b == 0).any(|var| var == wanted.as_bytes()) {
            continue;
        }
        let Some(stat) = stat(pid).filter(|s| s.state != 'Z') else { continue };
        let id = Identity { pid, pgid: stat.pgrp, start_time: stat.start_time };
        match found.iter_mut().find(|f| f.pgid == id.pgid) {
            Some(existing) if id.pid == id.pgid => *existing = id,
            Some(_) => {}
            None => found.push(id),
        }
    }
    found
}

/// Spawns `cmd` as an owned process: in its own process group (a Ctrl-C in the terminal
/// does not reach it, and a group signal reaches its children too), stdin from /dev/null,
/// stdout and stderr to `log` (created afresh).
pub fn own_group_logging_to(cmd: &mut Command, log: &Path) -> anyhow::Result<()> {
    let file = File::create(log).with_context(|| format!("creating {}", log.display()))?;
    cmd.stdin(Stdio::null()).stdout(file.try_clone()?).stderr(file).process_group(0);
    Ok(())
}

/// Stops groups: SIGTERM to each, up to `grace` for all of them together, then SIGKILL
/// to what is left. Returns the names that needed SIGKILL.
pub fn terminate_groups<'a>(groups: &[(&'a str, Identity)], grace: Duration) -> Vec<&'a str> {
    for (_, id) in groups {
        signal_group(id, libc::SIGTERM);
    }
    interrupts::wait_until(grace, || groups.iter().all(|(_, id)| !group_is_ours_and_alive(id)));
    let mut killed = Vec::new();
    for (name, id) in groups {
        if signal_group(id, libc::SIGKILL) {
            killed.push(*name);
        }
    }
    if !killed.is_empty() {
        interrupts::wait_until(Duration::from_secs(2), || {
            groups.iter().all(|(_, id)| !group_is_ours_and_alive(id))
        });
    }
    killed
}

/// How our child ended, if it has: its status, or, when something else collected it
/// first (`waitpid` elsewhere: ECHILD), that it ended. A crash is never mistaken for a
/// process still starting.
pub fn exit_status(child: &mut std::process::Child) -> Option<String> {
    match child.try_wait() {
        Ok(Some(status)) => Some(status.to_string()),
        Ok(None) => None,
        Err(err) => Some(format!("ended; its status was collected elsewhere ({err})")),
    }
}

/// Makes `cmd` a child this process owns: in its own process group (so a Ctrl-C in the
/// terminal reaches it once, through [`wait_child`], not twice) and killed by the kernel
/// if this process dies first (`PR_SET_PDEATHSIG`: nothing outlives a killed run).
pub fn own(cmd: &mut Command, on_owner_death: libc::c_int) {
    cmd.process_group(0);
    die_with_owner(cmd, on_owner_death);
}

/// Has the kernel send `signal` to the child when this process dies. Set after any other
/// `pre_exec` (a change of user clears it); a child whose owner died before it could ask
/// ends at once.
pub fn die_with_owner(cmd: &mut Command, signal: libc::c_int) {
    // SAFETY: getpid before fork; only async-signal-safe calls between fork and exec.
    let owner = unsafe { libc::getpid() };
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, signal as libc::c_ulong, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::getppid() != owner {
                libc::_exit(1);
            }
            Ok(())
        });
    }
}

/// Runs `cmd` as a child this process owns ([`own`]: its own process group, killed with
/// SIGTERM if we die) and waits for it with [`wait_child`]. Callers check
/// [`check_interrupted`](super::interrupts::check_interrupted) once they have cleaned up.
pub fn run_owned(cmd: &mut Command, grace: Duration) -> anyhow::Result<std::process::ExitStatus> {
    own(cmd, libc::SIGTERM);
    let mut child = cmd
        .spawn()
        .map_err(|err| anyhow::anyhow!("running {}: {err}", cmd.get_program().to_string_lossy()))?;
    Ok(wait_child(&mut child, grace)?)
}

/// Waits for a child while watching for interrupts; on one, passes the signal on to the
/// child, waits `grace`, then kills it.
pub fn wait_child(
    child: &mut std::process::Child,
    grace: Duration,
) -> std::io::Result<std::process::ExitStatus> {
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if let Some(signal) = interrupts::interrupted() {
            // SAFETY: kill(2) on our own child, not yet reaped.
            unsafe { libc::kill(child.id() as libc::pid_t, signal) };
            if !interrupts::wait_until(interrupts::grace(grace), || {
                matches!(child.try_wait(), Ok(Some(_)))
            }) {
                let _ = child.kill();
            }
            return child.wait();
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs `cargo <args>` (see [`super::command::cargo`]) as an owned child, announced in
/// one line; a failure is reported and ends the task with cargo's exit code.
pub fn run_cargo(args: &[String]) -> anyhow::Result<()> {
    eprintln!("xtask: cargo {}", args.join(" "));
    let mut command = super::command::cargo();
    command.args(args).stdin(Stdio::null());
    let status = run_owned(&mut command, Duration::from_secs(10))?;
    interrupts::check_interrupted()?;
    if !status.success() {
        eprintln!("error: `cargo {}` failed ({status})", args.join(" "));
        return Err(Exit::of(status).into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_reaped_elsewhere_still_counts_as_exited() {
        let mut child = Command::new("true").spawn().unwrap();
        // Another part of the program collects it first (as a liveness check might).
        let mut status = 0;
        // SAFETY: waitpid on our own child.
        let reaped = unsafe { libc::waitpid(child.id() as libc::pid_t, &mut status, 0) };
        assert_eq!(reaped, child.id() as libc::pid_t);
        let exit = exit_status(&mut child).expect("an exited child");
        assert!(exit.contains("collected elsewhere"), "{exit}");
        let mut running = Command::new("sleep").arg("5").spawn().unwrap();
        assert_eq!(exit_status(&mut running), None);
        running.kill().unwrap();
        running.wait().unwrap();
        assert!(exit_status(&mut running).is_some());
    }

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let line = "1234 (my (odd) cmd) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 10";
        let stat = parse_stat(line).unwrap();
        assert_eq!(stat.state, 'S');
        assert_eq!(stat.pgrp, 1234);
        assert_eq!(stat.start_time, 987654);
    }

    #[test]
    fn our_own_identity_is_alive_and_a_different_start_time_is_not() {
        let pid = std::process::id();
        let start = start_time(pid).unwrap();
        let me = Identity { pid, pgid: 0, start_time: start };
        assert!(me.is_ours_and_alive());
        let reused = Identity { start_time: start + 1, ..me };
        assert!(!reused.is_ours_and_alive());
    }
}
