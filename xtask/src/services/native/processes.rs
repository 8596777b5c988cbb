//! Owning processes safely: process identity (pid plus start time, so a reused pid is
//! never mistaken for ours), liveness, signals to whole process groups, and waiting
//! without sleeping longer than needed.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::Context as _;

/// A process as recorded in a state file: its pid, process group and kernel start time.
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

/// The environment variable every process of a native session carries: the state
/// directory it belongs to. It finds a session's processes when its state file is gone.
pub const STATE_DIR_MARKER: &str = "TASKER_XTASK_STATE_DIR";

/// Marks `cmd` as a process of the session in `state_dir`.
pub fn mark(cmd: &mut Command, state_dir: &Path) {
    cmd.env(STATE_DIR_MARKER, state_dir);
}

/// The process groups (by their leader, or a member when the leader is gone) whose
/// processes carry the marker of `state_dir`. Only processes we may read are seen: ours.
pub fn marked(state_dir: &Path) -> Vec<Identity> {
    let wanted = format!("{STATE_DIR_MARKER}={}", state_dir.display());
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
    crate::interrupts::wait_until(grace, || {
        groups.iter().all(|(_, id)| !group_is_ours_and_alive(id))
    });
    let mut killed = Vec::new();
    for (name, id) in groups {
        if signal_group(id, libc::SIGKILL) {
            killed.push(*name);
        }
    }
    if !killed.is_empty() {
        crate::interrupts::wait_until(Duration::from_secs(2), || {
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

/// Whether we run as root (then PostgreSQL needs another user).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
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
