//! Interrupts and waiting: SIGINT, SIGTERM and SIGHUP become a flag that every wait
//! loop checks, so each task ends through its teardown (children we wait for get the
//! signal passed on, once: xtask's `sys::process::wait_child`). A second signal
//! escalates: graces end at once. Shared by every task that runs processes.

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
            Err(crate::error::Exit(128 + signal as u8).into())
        }
        None => Ok(()),
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
