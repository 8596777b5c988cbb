//! A session's life, natively: `up` exports URLs that answer and `down` leaves no
//! process, port, state file or data directory; `services run` and `ci-native` stop
//! everything when their command ends; sessions in separate state directories run side
//! by side, two runs on one directory record one session, a stale record never gets a
//! stranger's process killed, and fifty cycles leave nothing behind.

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::{Fixture, fake_cargo, port_closed, ports_of, read_state, stderr};

#[test]
fn up_exports_urls_that_answer_and_down_leaves_nothing() {
    let f = Fixture::new("updown");
    f.two_services();
    let out = f.up("s");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("DATABASE_URL=postgres://postgres:***@127.0.0.1:"), "{stdout}");
    assert!(stdout.contains("TASKER_TEST_WORKER_URL=http://127.0.0.1:"), "{stdout}");
    let env_file = std::fs::read_to_string(f.state("s").join("services.env")).unwrap();
    assert!(env_file.contains("TASKER_TEST_ORCHESTRATION_URL="));
    let state = read_state(&f.state("s"));
    let status = f.run("s", &["services", "status"]);
    let status_text = String::from_utf8_lossy(&status.stdout);
    assert_eq!(status_text.matches("s  healthy").count(), 2, "{status_text}");
    let logs = f.run("s", &["services", "logs", "worker"]);
    assert!(
        String::from_utf8_lossy(&logs.stdout).contains("fake-service starting as tasker-worker")
    );
    f.down("s");
    for port in ports_of(&state) {
        assert!(port_closed(port), "port {port} still open");
    }
    f.assert_nothing_left("s");
    // Idempotent: a second down finds nothing and succeeds.
    f.down("s");
}

#[test]
fn logs_prints_bytes_that_are_not_utf8_and_a_last_line_without_newline() {
    let f = Fixture::new("logs");
    f.two_services();
    let logs = f.state("s").join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    std::fs::write(logs.join("worker.log"), b"first\n\xff\xfe not utf-8\nkilled mid-li").unwrap();
    let out = f.run("s", &["services", "logs", "worker"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "first\n\u{fffd}\u{fffd} not utf-8\nkilled mid-li\n"
    );
}

#[test]
fn services_run_gives_the_command_the_urls_passes_on_its_exit_code_and_stops_everything() {
    let f = Fixture::new("services-run");
    f.two_services();
    let seen = f.dir.join("seen");
    let script = format!(
        "test -e '{state}/services.json' && echo \"$TASKER_TEST_WORKER_URL\" > '{seen}'; exit 7",
        state = f.state("s").display(),
        seen = seen.display()
    );
    let out = f.run("s", &["services", "run", "--", "sh", "-c", &script]);
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    let seen = std::fs::read_to_string(&seen).expect("the command did not run with the session up");
    assert!(seen.starts_with("http://127.0.0.1:"), "{seen}");
    f.assert_nothing_left("s");
}

#[test]
fn ci_native_runs_the_tests_against_the_services_and_collects_logs_on_failure() {
    let f = Fixture::new("cinative");
    f.two_services();
    let cargo = fake_cargo(&f, "exit 0");
    let out = f
        .xtask("s", &["ci-native", "--partition", "hash:1/2", "--", "--no-fail-fast"])
        .env("CARGO", &cargo)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let calls = std::fs::read_to_string(f.dir.join("cargo-calls")).unwrap();
    assert!(
        calls.contains("nextest run --profile ci --workspace --features tasker-core/test-services --test e2e_* --partition hash:1/2 --no-fail-fast"),
        "{calls}"
    );
    let env = std::fs::read_to_string(f.dir.join("cargo-calls.env")).unwrap();
    assert!(
        env.contains("TASKER_TEST_ORCHESTRATION_URL=http://127.0.0.1:")
            && env.contains("TASKER_TEST_WORKER_URL="),
        "{env}"
    );
    let timings = std::fs::read_to_string(f.state("s").join("timings.json")).unwrap();
    for phase in ["database", "migrate", "start", "ready", "tests", "teardown"] {
        assert!(timings.contains(&format!("\"{phase}\"")), "{phase} missing in {timings}");
    }
    assert!(!f.state("s").join("ci-logs").exists(), "logs collected although the tests passed");
    f.assert_nothing_left("s");

    let cargo = fake_cargo(&f, "exit 100");
    let out = f.xtask("s", &["ci-native"]).env("CARGO", &cargo).output().unwrap();
    assert_eq!(out.status.code(), Some(100), "{}", stderr(&out));
    for log in ["orchestration.log", "worker.log", "postgres.log", "migrate.log"] {
        assert!(f.state("s").join("ci-logs").join(log).exists(), "{log} not collected");
    }
    f.assert_nothing_left("s");
}

#[test]
fn two_sessions_with_separate_state_dirs_run_side_by_side() {
    let f = Fixture::new("sidebyside");
    f.two_services();
    f.up("a");
    f.up("b");
    let mut ports = ports_of(&read_state(&f.state("a")));
    ports.extend(ports_of(&read_state(&f.state("b"))));
    let mut unique = ports.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), ports.len(), "ports shared: {ports:?}");
    for state in ["a", "b"] {
        let out = f.run(state, &["services", "status"]);
        assert_eq!(String::from_utf8_lossy(&out.stdout).matches("s  healthy").count(), 2);
    }
    f.down("a");
    // b is untouched by a's teardown.
    let out = f.run("b", &["services", "status"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).matches("s  healthy").count(), 2);
    f.down("b");
    f.assert_nothing_left("a");
    f.assert_nothing_left("b");
}

#[test]
fn two_runs_on_one_state_directory_at_once_record_one_session() {
    let f = Fixture::new("twice");
    f.two_services();
    let mut first = f.xtask("s", &["services", "up"]);
    let mut second = f.xtask("s", &["services", "up"]);
    let (a, b) = (
        first.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap(),
        second.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap(),
    );
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let codes = [a.status.code(), b.status.code()];
    assert!(
        codes.contains(&Some(0)) && codes.contains(&Some(2)),
        "{codes:?}: {} / {}",
        stderr(&a),
        stderr(&b)
    );
    let refused = if a.status.code() == Some(2) { &a } else { &b };
    let err = stderr(refused);
    assert!(
        err.contains("another xtask run") || err.contains("still running"),
        "one line saying why: {err}"
    );
    // Exactly one session, and nothing it does not track.
    let recorded = read_state(&f.state("s"));
    assert_eq!(recorded["services"].as_array().unwrap().len(), 2);
    f.down("s");
    f.assert_nothing_left("s");
}

#[test]
fn a_stale_state_file_whose_pid_was_reused_does_not_get_it_killed() {
    let f = Fixture::new("stale");
    f.two_services();
    let mut victim = Command::new("sleep").arg("60").process_group(0).spawn().unwrap();
    let pid = victim.id();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let start_time: u64 =
        stat.rsplit(')').next().unwrap().split_whitespace().nth(19).unwrap().parse().unwrap();
    let state = serde_json::json!({
        "version": 2,
        "backend": "native",
        "database": null,
        "services": [{
            "name": "orchestration", "url": "http://127.0.0.1:1", "addr": "127.0.0.1:1",
            "instance_id": "x", "health_path": "/health", "identity": "tasker-orchestration",
            "export": null, "started_unix": 0, "log": "/dev/null",
            "process": { "pid": pid, "pgid": pid, "start_time": start_time - 1 },
        }],
        "excluded_tests": [],
    });
    std::fs::create_dir_all(f.state("s")).unwrap();
    std::fs::write(f.state("s").join("services.json"), state.to_string()).unwrap();

    let out = f.run("s", &["services", "down", "--grace", "0.2"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!("pid {pid} now belongs to another process; left alone")),
        "{}",
        stderr(&out)
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(victim.try_wait().unwrap().is_none(), "the unrelated process was killed");
    assert!(!f.state("s").join("services.json").exists());

    // `up` over such a stale file starts fresh and still spares the process.
    std::fs::write(f.state("s").join("services.json"), state.to_string()).unwrap();
    f.up("s");
    f.down("s");
    assert!(victim.try_wait().unwrap().is_none(), "the unrelated process was killed");
    victim.kill().unwrap();
    victim.wait().unwrap();
    f.assert_nothing_left("s");
}

#[test]
fn fifty_up_down_cycles_without_failures_or_leftovers() {
    let f = Fixture::new("cycles");
    f.two_services();
    // Fifty in the stress tier (`cargo xtask test --stress`, nightly); five on every other
    // run: the same checks on every cycle, a tenth of the time.
    for cycle in 1..=crate::support::stress_cycles(50, 5) {
        let up = f.run("s", &["services", "up"]);
        assert!(up.status.success(), "cycle {cycle}: up failed: {}", stderr(&up));
        let down = f.run("s", &["services", "down"]);
        assert!(down.status.success(), "cycle {cycle}: down failed: {}", stderr(&down));
        assert!(!stderr(&down).contains("SIGKILL"), "cycle {cycle}: {}", stderr(&down));
    }
    f.assert_nothing_left("s");
}
