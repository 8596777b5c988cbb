//! SIGINT, SIGTERM or Ctrl-C at any point (while the tests run, while `services up`
//! waits for readiness, to `services run`'s command) stops everything within the
//! shutdown budget and exits with 128 + the signal; SIGKILL takes the services and the
//! database along, and the next run starts normally.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::support::{
    Fixture, fake_cargo, port_closed, ports_of, read_state, scaled, stderr, wait_for_marker,
};

/// Signals `ci-native` while its tests run; everything must be gone afterwards.
fn interrupt_ci_native_mid_run(name: &str, signal: i32) {
    let f = Fixture::new(name);
    f.two_services();
    let marker = f.dir.join("tests-running");
    let cargo = fake_cargo(&f, &format!("touch '{}'; exec sleep 60", marker.display()));
    let mut child = f.background(f.xtask("s", &["ci-native"]).env("CARGO", &cargo));
    wait_for_marker(&mut child, &marker, Duration::from_secs(60));
    let state = read_state(&f.state("s"));
    let data_dir = PathBuf::from(state["database"]["data_dir"].as_str().unwrap());
    assert!(data_dir.exists());
    // SAFETY: signalling the child we spawned.
    unsafe { libc::kill(child.id() as i32, signal) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(128 + signal));
    for port in ports_of(&state) {
        assert!(port_closed(port), "port {port} still open");
    }
    assert!(!data_dir.exists(), "data directory left behind");
    f.assert_nothing_left("s");
}

#[test]
fn sigint_to_ci_native_mid_run_leaves_nothing_behind() {
    interrupt_ci_native_mid_run("sigint", libc::SIGINT);
}

#[test]
fn sigterm_to_ci_native_mid_run_leaves_nothing_behind() {
    interrupt_ci_native_mid_run("sigterm", libc::SIGTERM);
}

/// A Ctrl-C in a terminal signals the whole foreground process group. The tests must get
/// it once (from xtask, which owns them), not a second time from the terminal: nextest
/// takes a second signal as "kill at once" and skips its own clean-up.
#[test]
fn ctrl_c_to_the_process_group_reaches_the_tests_once() {
    let f = Fixture::new("ctrl-c-once");
    f.two_services();
    let marker = f.dir.join("tests-running");
    let received = f.dir.join("signals-received");
    // The trap ends the long sleep itself: a signal that lands before `wait` starts (the
    // shell runs a trap only between commands) must not leave `wait` to sit out the 60 s.
    // The marker is made by the shell, not by a `touch` the signal could land during.
    // The second sleep is the window for a second signal, which would add a line.
    let tests = format!(
        "sleep 60 & pid=$!; trap 'echo INT >> \"{received}\"; kill $pid 2>/dev/null' INT; \
         : > '{marker}'; wait $pid; sleep 1 & wait $!; exit 130",
        received = received.display(),
        marker = marker.display()
    );
    let cargo = fake_cargo(&f, &tests);
    let mut child = f.background(f.xtask("s", &["ci-native"]).env("CARGO", &cargo));
    wait_for_marker(&mut child, &marker, Duration::from_secs(60));
    // SAFETY: signalling the process group of the child we spawned, as a terminal does.
    unsafe { libc::kill(-(child.id() as i32), libc::SIGINT) };
    assert_eq!(child.wait().unwrap().code(), Some(130));
    let signals = std::fs::read_to_string(&received).unwrap_or_default();
    assert_eq!(signals.lines().count(), 1, "the tests got {signals:?}");
    f.assert_nothing_left("s");
}

#[test]
fn sigint_to_services_run_stops_the_command_and_the_services() {
    let f = Fixture::new("services-run-sigint");
    f.two_services();
    let marker = f.dir.join("command-running");
    // The shell's command line names the fixture, so a survivor would be a leftover.
    let script = format!("touch '{}'; while :; do sleep 0.1; done", marker.display());
    let mut child =
        f.background(&mut f.xtask("s", &["services", "run", "--", "sh", "-c", &script]));
    wait_for_marker(&mut child, &marker, Duration::from_secs(60));
    // SAFETY: signalling the process group of the child we spawned, as a terminal does.
    unsafe { libc::kill(-(child.id() as i32), libc::SIGINT) };
    assert_eq!(child.wait().unwrap().code(), Some(130));
    f.assert_nothing_left("s");
}

#[test]
fn sigint_while_waiting_for_readiness_leaves_nothing_behind() {
    let f = Fixture::new("sigint-startup");
    f.manifest(&f.fake(
        "orchestration",
        "tasker-orchestration",
        &[("FAKE_DELAY_MS", "600000")],
        "",
    ));
    let mut child = f.background(&mut f.xtask("s", &["services", "up"]));
    // Wait until the service is recorded as started, i.e. `up` waits for its readiness.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let started = std::fs::read_to_string(f.state("s").join("services.json"))
            .is_ok_and(|t| t.contains("\"orchestration\""));
        if started {
            break;
        }
        assert!(Instant::now() < deadline, "the service never started");
        assert!(child.try_wait().unwrap().is_none(), "up ended early");
        std::thread::sleep(Duration::from_millis(20));
    }
    // SAFETY: signalling the child we spawned.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    assert_eq!(child.wait().unwrap().code(), Some(130));
    f.assert_nothing_left("s");
}

/// Starts `ci-native` (with a stand-in cargo whose tests wait) in the background and
/// returns once its tests run, with the state it recorded.
fn ci_native_in_its_tests(f: &Fixture, state: &str) -> (std::process::Child, serde_json::Value) {
    let marker = f.dir.join(format!("{state}-tests-running"));
    let cargo = fake_cargo(f, &format!("touch '{}'; exec sleep 60", marker.display()));
    let mut child = f.background(f.xtask(state, &["ci-native"]).env("CARGO", &cargo));
    wait_for_marker(&mut child, &marker, scaled(Duration::from_secs(60)));
    let recorded = read_state(&f.state(state));
    (child, recorded)
}

#[test]
fn sigkill_to_ci_native_takes_its_services_along_and_the_next_run_starts() {
    let f = Fixture::new("sigkill");
    f.two_services();
    let (mut child, recorded) = ci_native_in_its_tests(&f, "s");
    let data_dir = PathBuf::from(recorded["database"]["data_dir"].as_str().unwrap());
    // SAFETY: signalling the child we spawned.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    child.wait().unwrap();
    // The services and the database die with their owner (the kernel tells them).
    let deadline = Instant::now() + scaled(Duration::from_secs(5));
    while !f.leftovers().is_empty() {
        assert!(Instant::now() < deadline, "left running: {:?}", f.leftovers());
        std::thread::sleep(Duration::from_millis(20));
    }
    // (Ports are not checked here: once freed, tests running in parallel may take them.)
    // The next run starts normally, saying what it cleaned up.
    let cargo = fake_cargo(&f, "exit 0");
    let out = f.xtask("s", &["ci-native"]).env("CARGO", &cargo).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("is gone; stopping what it left"), "{}", stderr(&out));
    assert!(!data_dir.exists(), "the killed run's data directory is still there");
    f.assert_nothing_left("s");
}

#[test]
fn a_service_ignoring_sigterm_is_stopped_within_the_shutdown_budget() {
    let f = Fixture::new("budget");
    f.manifest(
        &[
            f.fake("orchestration", "tasker-orchestration", &[("FAKE_IGNORE_TERM", "1")], ""),
            f.fake(
                "worker",
                "tasker-worker",
                &[("FAKE_IGNORE_TERM", "1")],
                r#"depends_on = ["orchestration"]"#,
            ),
        ]
        .concat(),
    );
    let (mut child, _) = ci_native_in_its_tests(&f, "s");
    let signalled = Instant::now();
    // SAFETY: signalling the child we spawned.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    assert_eq!(child.wait().unwrap().code(), Some(128 + libc::SIGTERM));
    let took = signalled.elapsed();
    assert!(took < scaled(Duration::from_secs(5)), "the shutdown took {took:?}");
    f.assert_nothing_left("s");
}
