//! Interrupts and waiting: SIGINT, SIGTERM and SIGHUP become a flag that every wait
//! loop checks, so each task ends through its teardown; children we wait for get the
//! signal passed on, once. A second signal escalates: graces end at once. Shared by
//! every task that runs processes.

use std::os::unix::process::CommandExt as _;
use std::process::Command;
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};
use std::time::{Duration, Instant};

static INTERRUPTED: AtomicI32 = AtomicI32::new(0);
static SIGNALS: AtomicU32 = AtomicU32::new(0);

extern "C" fn on_interrupt(signal: libc::c_int) {
    // The first signal names the exit status; later ones only escalate.
    let _ = INTERRUPTED.compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst);
    SIGNALS.fetch_add(1, Ordering::SeqCst);
}

/// After a signal, each stage of a shutdown gets at most this long (nextest, the
/// services, the database): with SIGKILL's own moment, everything is stopped within
/// about 5 s, before a CI runner's cancellation escalates to SIGKILL (SIGINT, then
/// SIGTERM 7.5 s later, then SIGKILL 2.5 s after that).
pub const SHUTDOWN_STAGE: Duration = Duration::from_millis(1500);

/// `normal`, or at most [`SHUTDOWN_STAGE`] once a signal asked us to stop.
pub fn grace(normal: Duration) -> Duration {
    if interrupted().is_some() { normal.min(SHUTDOWN_STAGE) } else { normal }
}

/// True once a second signal arrived: stop waiting for anything to end gracefully.
pub fn escalated() -> bool {
    SIGNALS.load(Ordering::SeqCst) >= 2
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

/// From now on SIGINT, SIGTERM and SIGHUP only set a flag that the task's wait loops
/// check, so every exit path goes through teardown. Children get the default handlers
/// back when they exec.
pub fn catch_interrupts() {
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { libc::signal(signal, on_interrupt as *const () as libc::sighandler_t) };
    }
}

/// The signal that interrupted us, if any.
pub fn interrupted() -> Option<libc::c_int> {
    match INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst) {
        0 => None,
        signal => Some(signal),
    }
}

/// Once a signal interrupted us: the error that ends the task with `128 + signal`, the
/// status a shell reports for death by that signal. Callers tear down on the way out.
pub fn check_interrupted() -> anyhow::Result<()> {
    match interrupted() {
        Some(signal) => {
            eprintln!("xtask: interrupted (signal {signal}); stopping");
            Err(crate::project::Exit(128 + signal as u8).into())
        }
        None => Ok(()),
    }
}

/// Runs `cmd` as a child this process owns ([`own`]: its own process group, killed with
/// SIGTERM if we die) and waits for it with [`wait_child`]. Callers check
/// [`check_interrupted`] once they have cleaned up.
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
        if let Some(signal) = interrupted() {
            // SAFETY: kill(2) on our own child, not yet reaped.
            unsafe { libc::kill(child.id() as libc::pid_t, signal) };
            if !wait_until(self::grace(grace), || matches!(child.try_wait(), Ok(Some(_)))) {
                let _ = child.kill();
            }
            return child.wait();
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Polls until `done` returns true or `timeout` passes (or a second signal escalates);
/// returns whether it became true.
pub fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(1);
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline || escalated() {
            return false;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}
