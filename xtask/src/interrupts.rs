//! Interrupts and waiting: SIGINT, SIGTERM and SIGHUP become a flag that every wait
//! loop checks, so each task ends through its teardown; children we wait for get the
//! signal passed on. Shared by every task that runs processes.

use std::time::{Duration, Instant};

static INTERRUPTED: std::sync::atomic::AtomicI32 = std::sync::atomic::AtomicI32::new(0);

extern "C" fn on_interrupt(signal: libc::c_int) {
    INTERRUPTED.store(signal, std::sync::atomic::Ordering::SeqCst);
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
            // SAFETY: kill(2) on our own child.
            unsafe { libc::kill(child.id() as libc::pid_t, signal) };
            if !wait_until(grace, || matches!(child.try_wait(), Ok(Some(_)))) {
                let _ = child.kill();
            }
            return child.wait();
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Polls until `done` returns true or `timeout` passes; returns whether it became true.
pub fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(1);
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}
