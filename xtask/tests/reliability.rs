//! Reliability of the native backend, on real processes: a real PostgreSQL, the xtask
//! binary itself, and `fake-service` (a stand-in that serves `/health` like the real
//! services and misbehaves on request). Each test has its own state directory, whose
//! path also tags every process it starts, so "nothing left behind" is checked by
//! looking for that tag in `/proc`.

use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

mod support;

use support::{FAKE, Fixture, XTASK, fake_cargo, scaled, stderr, wait_for_marker};

fn read_state(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path.join("services.json")).unwrap()).unwrap()
}

fn ports_of(state: &serde_json::Value) -> Vec<u16> {
    let mut ports: Vec<u16> = state["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["addr"].as_str().unwrap().rsplit(':').next().unwrap().parse().unwrap())
        .collect();
    ports.push(state["database"]["port"].as_u64().unwrap() as u16);
    ports
}

fn port_closed(port: u16) -> bool {
    TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200)).is_err()
}

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
fn a_service_crashing_at_start_is_reported_at_once_with_its_log_tail() {
    let f = Fixture::new("crash");
    f.manifest(&f.fake("orchestration", "tasker-orchestration", &[("FAKE_CRASH", "1")], ""));
    let started = Instant::now();
    let out = f.run("s", &["services", "up", "--timeout", "60"]);
    let took = started.elapsed();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("service `orchestration` exited during startup (exit status: 3)"),
        "{err}"
    );
    assert!(err.contains("configured to crash at start"), "log tail missing: {err}");
    // Fail-fast, not the 60 s timeout: the whole `up` (database included) ends quickly.
    assert!(took < scaled(Duration::from_secs(10)), "took {took:?}");
    f.assert_nothing_left("s");
}

#[test]
fn a_dependency_dying_while_its_dependents_start_is_reported_at_once() {
    let f = Fixture::new("depdies");
    f.manifest(
        &[
            f.fake("orchestration", "tasker-orchestration", &[("FAKE_EXIT_AFTER_MS", "500")], ""),
            f.fake(
                "worker",
                "tasker-worker",
                &[("FAKE_DELAY_MS", "600000")],
                r#"depends_on = ["orchestration"]"#,
            ),
        ]
        .concat(),
    );
    let out = f.run("s", &["services", "up", "--timeout", "60"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("service `orchestration` exited during startup (exit status: 7)"),
        "{err}"
    );
    assert!(err.contains("configured to exit after 500 ms"), "{err}");
    f.assert_nothing_left("s");
}

#[test]
fn a_foreign_server_on_the_services_port_is_never_accepted() {
    let f = Fixture::new("foreign");
    // The service process never binds; a separate program answers 200 on its port.
    f.manifest(&format!(
        r#"
[services.orchestration]
command = ["sh"]
args = ["-c", "'{FAKE}' foreign {{port}} '{tag}' & exec '{FAKE}' serve '{tag}'"]
env = {{ TASKER_WEB_BIND_ADDRESS = "127.0.0.1:{{port}}", FAKE_DELAY_MS = "600000", TAG = "{tag}" }}
health = {{ path = "/health", service = "tasker-orchestration" }}

[services.impostor]
command = ["{FAKE}"]
args = ["serve", "{tag}"]
env = {{ TASKER_WEB_BIND_ADDRESS = "127.0.0.1:{{port}}", TASKER_INSTANCE_ID = "someone-else" }}
health = {{ path = "/health", service = "tasker-orchestration" }}
"#,
        tag = f.dir.display()
    ));
    let out = f.run("s", &["services", "up", "--timeout", "2"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("not ready after"), "{err}");
    assert!(
        err.contains("`orchestration` (HTTP 200 from service `something-else`: not this service"),
        "{err}"
    );
    assert!(
        err.contains(
            "`impostor` (HTTP 200 from `tasker-orchestration` with instance_id \"someone-else\""
        ),
        "{err}"
    );
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
    let tests = format!(
        "sleep 60 & pid=$!; trap 'echo INT >> \"{received}\"' INT; touch '{marker}'; \
         wait $pid; sleep 1 & wait $!; kill $pid; exit 130",
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
fn fifty_up_down_cycles_without_failures_or_leftovers() {
    let f = Fixture::new("cycles");
    f.two_services();
    for cycle in 1..=50 {
        let up = f.run("s", &["services", "up"]);
        assert!(up.status.success(), "cycle {cycle}: up failed: {}", stderr(&up));
        let down = f.run("s", &["services", "down"]);
        assert!(down.status.success(), "cycle {cycle}: down failed: {}", stderr(&down));
        assert!(!stderr(&down).contains("SIGKILL"), "cycle {cycle}: {}", stderr(&down));
    }
    f.assert_nothing_left("s");
}

/// Bad input: one `error:` line naming what is wrong, exit 2, nothing started.
fn assert_bad_input(f: &Fixture, out: &Output, expected: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "not one line: {err}");
    assert!(lines[0].starts_with("error: ") && lines[0].contains(expected), "{err}");
    f.assert_nothing_left("s");
}

#[test]
fn bad_input_is_one_line_exit_2_and_starts_nothing() {
    let f = Fixture::new("badinput");
    f.two_services();
    let out = f.run("s", &["services", "up", "--only", "wrker"]);
    assert_bad_input(&f, &out, "unknown service `wrker` in --only");
    assert!(stderr(&out).contains("defines: orchestration, worker"));

    std::fs::write(
        f.manifest_path(),
        "[services.a]\ncommand = [\"x\"]\nhealth = { path = \"/health\"\n",
    )
    .unwrap();
    let out = f.run("s", &["services", "up"]);
    assert_bad_input(&f, &out, &format!("{}:3: malformed TOML", f.manifest_path().display()));

    f.manifest(
        r#"
[services.orchestration]
binary = "no-such-server"
package = "nowhere"
env = { TASKER_WEB_BIND_ADDRESS = "127.0.0.1:{port}" }
health = { path = "/health", service = "tasker-orchestration" }
"#,
    );
    let out = f.run("s", &["services", "up"]);
    assert_bad_input(&f, &out, "build it with `cargo build -p nowhere --bin no-such-server`");

    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    f.manifest(&format!(
        r#"
[services.orchestration]
command = ["{FAKE}"]
args = ["serve"]
env = {{ TASKER_WEB_BIND_ADDRESS = "127.0.0.1:{{port}}" }}
health = {{ path = "/health", service = "tasker-orchestration" }}
fixed_port = {port}
"#
    ));
    let out = f.run("s", &["services", "up", "--fixed-ports"]);
    assert_bad_input(&f, &out, &format!("port {port} for `orchestration` (--fixed-ports"));
    drop(busy);

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let out = f
        .xtask("s", &["services", "up"])
        .env("DATABASE_URL", format!("postgres://app:hunter2@127.0.0.1:{closed}/db"))
        .output()
        .unwrap();
    assert_bad_input(
        &f,
        &out,
        &format!("DATABASE_URL `postgres://app:***@127.0.0.1:{closed}/db` is not reachable"),
    );
    assert!(!stderr(&out).contains("hunter2"));

    f.manifest(&format!(
        r#"
[services.orchestration]
command = ["{FAKE}"]
args = ["serve"]
requires = ["no-such-tool-xyz"]
env = {{ TASKER_WEB_BIND_ADDRESS = "127.0.0.1:{{port}}" }}
health = {{ path = "/health", service = "tasker-orchestration" }}
"#
    ));
    let out = f.run("s", &["services", "up"]);
    assert_bad_input(
        &f,
        &out,
        "service `orchestration` requires `no-such-tool-xyz` on PATH: install `no-such-tool-xyz`",
    );
}

#[test]
fn a_missing_optional_requirement_skips_the_service_with_a_warning() {
    let f = Fixture::new("optional");
    let manifest = f.two_services();
    let mut text = std::fs::read_to_string(&manifest).unwrap();
    text.push_str(
        r#"
[services.ruby-worker]
command = ["no-such-ruby-xyz"]
args = ["{port}"]
optional = true
tests = "binary(ruby_worker)"
health = { path = "/health", service = "tasker-worker" }
export = "TASKER_TEST_RUBY_WORKER_URL"
"#,
    );
    std::fs::write(&manifest, text).unwrap();
    let cargo = fake_cargo(&f, "exit 0");
    let out = f.xtask("s", &["ci-native"]).env("CARGO", &cargo).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains(
        "warning: skipping optional service `ruby-worker`: it requires `no-such-ruby-xyz` on PATH"
    ));
    let calls = std::fs::read_to_string(f.dir.join("cargo-calls")).unwrap();
    assert!(calls.contains("-E not (binary(ruby_worker))"), "{calls}");
    let env = std::fs::read_to_string(f.dir.join("cargo-calls.env")).unwrap();
    assert!(!env.contains("TASKER_TEST_RUBY_WORKER_URL"), "{env}");
    f.assert_nothing_left("s");
}

#[test]
fn ci_native_without_nextest_says_how_to_install_it_and_starts_nothing() {
    let f = Fixture::new("nonextest");
    f.two_services();
    let cargo = f.dir.join("cargo");
    std::fs::write(&cargo, "#!/bin/sh\necho 'error: no such command: `nextest`' >&2\nexit 101\n")
        .unwrap();
    std::fs::set_permissions(&cargo, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = f.xtask("s", &["ci-native", "--no-install"]).env("CARGO", &cargo).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.trim_end().starts_with(
            "error: missing cargo-nextest: run `cargo install --locked cargo-nextest@"
        ) && err.trim_end().ends_with("` (--no-install)")
            && err.trim_end().lines().count() == 1,
        "{err}"
    );
    f.assert_nothing_left("s");
}

#[test]
fn ci_native_installs_a_missing_nextest_says_so_then_builds() {
    let f = Fixture::new("installnextest");
    f.two_services();
    // A cargo without nextest until `cargo install --locked cargo-nextest@<pinned>` ran.
    let cargo = f.dir.join("cargo");
    let installed = f.dir.join("nextest-installed");
    let calls = f.dir.join("cargo-calls");
    std::fs::write(
        &cargo,
        format!(
            "#!/bin/sh
echo \"$*\" >> {calls}
\
             case \"$1 $2 $3\" in 'install --locked cargo-nextest@'*) touch {installed}; exit 0;; esac\n\
             if [ \"$1\" = nextest ]; then [ -e {installed} ]; exit $?; fi\n\
             exit 1\n",
            calls = calls.display(),
            installed = installed.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&cargo, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = f.xtask("s", &["ci-native"]).env("CARGO", &cargo).output().unwrap();
    let err = stderr(&out);
    assert!(
        err.contains(
            "==> [0:00] install requirements\n\
             xtask: installing cargo-nextest: cargo install --locked cargo-nextest@"
        ),
        "{err}"
    );
    // Then the pipeline went on to its build (which this cargo fails).
    let calls = std::fs::read_to_string(&calls).unwrap();
    let order: Vec<&str> = calls.lines().collect();
    assert_eq!(order[0], "nextest --version", "{calls}");
    assert!(order[1].starts_with("install --locked cargo-nextest@"), "{calls}");
    assert_eq!(order[2], "nextest --version", "{calls}");
    assert!(order[3].starts_with("build --workspace"), "{calls}");
    assert_eq!(out.status.code(), Some(1), "{err}");
    f.assert_nothing_left("s");
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
fn the_docker_backend_without_an_engine_is_one_line_exit_2_and_starts_nothing() {
    let f = Fixture::new("noengine");
    f.two_services();
    for args in [&["ci-docker", "--no-build"][..], &["services", "up", "--backend", "docker"][..]] {
        let out = f
            .xtask("s", args)
            .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        let err = stderr(&out);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("error: no Docker engine is reachable ("), "{err}");
        assert!(err.contains("`cargo xtask ci-native` needs none"), "{err}");
    }
    f.assert_nothing_left("s");
}

/// `psql` as the given user (`None`: as ourselves), never prompting for a password.
fn psql(as_user: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = match as_user {
        Some(user) => {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", user, "--", "psql"]);
            cmd
        }
        None => Command::new("psql"),
    };
    let out = cmd.args(["-w", "-X", "-At"]).args(args).stdin(std::process::Stdio::null()).output();
    out.expect(
        "psql is required for this test (Debian: postgresql-client, installed with postgresql)",
    )
}

fn database_url(f: &Fixture, state: &str) -> String {
    let env = std::fs::read_to_string(f.state(state).join("services.env")).unwrap();
    env.lines().find_map(|l| l.strip_prefix("DATABASE_URL=")).unwrap().to_string()
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// The issue's reproduction: while services run, another local account must not reach
/// the throwaway database, over TCP (a password is required) or its socket (a private
/// directory), so it cannot run `COPY ... TO PROGRAM` as the server's account.
#[test]
fn another_local_user_cannot_use_the_throwaway_database() {
    use std::os::unix::fs::PermissionsExt as _;
    let f = Fixture::new("dbauth");
    f.two_services();
    f.up("s");
    let url = database_url(&f, "s");
    let state = read_state(&f.state("s"));
    let port = state["database"]["port"].as_u64().unwrap().to_string();
    let socket_dir = state["database"]["socket_dir"].as_str().unwrap().to_string();
    for file in ["services.env", "services.json"] {
        let mode = std::fs::metadata(f.state("s").join(file)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{file} is readable by others");
    }
    let socket_mode = std::fs::metadata(&socket_dir).unwrap().permissions().mode();
    assert_eq!(socket_mode & 0o777, 0o700, "the socket directory is open to others");

    // With the session's password it works (so the refusals below can fail).
    let ok = psql(None, &[&url, "-c", "select 41 + 1"]);
    assert_eq!(String::from_utf8_lossy(&ok.stdout).trim(), "42", "{}", stderr(&ok));

    let marker = f.dir.join("pwned");
    let attack = format!("COPY (select 1) TO PROGRAM 'id > {}'", marker.display());
    let without_password = url.replacen(&format!(":{}@", password_of(&url)), "@", 1);
    let users: Vec<Option<&str>> = if is_root() { vec![None, Some("nobody")] } else { vec![None] };
    for user in users {
        let tcp = psql(user, &[&without_password, "-c", &attack]);
        assert!(!tcp.status.success(), "TCP without a password was accepted for {user:?}");
        let err = stderr(&tcp);
        assert!(
            err.contains("no password supplied") || err.contains("password authentication failed"),
            "{user:?}: {err}"
        );
        if user.is_some() {
            let socket = psql(
                user,
                &[
                    "-h",
                    &socket_dir,
                    "-p",
                    &port,
                    "-U",
                    "postgres",
                    "-d",
                    "tasker_test",
                    "-c",
                    &attack,
                ],
            );
            assert!(!socket.status.success(), "the socket let another account in");
            assert!(stderr(&socket).contains("Permission denied"), "{}", stderr(&socket));
        }
    }
    if !is_root() {
        eprintln!("note: not root: the other-account part (runuser) was not run");
    }
    assert!(!marker.exists(), "the attack ran a program as the server's account");
    f.down("s");
    f.assert_nothing_left("s");
}

fn password_of(url: &str) -> String {
    let userinfo = url.split("://").nth(1).unwrap().rsplit_once('@').unwrap().0;
    userinfo.split_once(':').unwrap().1.to_string()
}

#[test]
fn the_database_password_is_in_no_printed_output_and_no_log() {
    let f = Fixture::new("dbsecret");
    f.two_services();
    let mut printed = Vec::new();
    let up = f.up("s");
    let password = password_of(&database_url(&f, "s"));
    assert_eq!(password.len(), 32, "a per-session random password");
    printed.push(("up", up));
    printed.push(("status", f.run("s", &["services", "status"])));
    printed.push(("logs", f.run("s", &["services", "logs"])));
    printed.push(("down", f.run("s", &["services", "down"])));
    // The pipeline, with tests that fail, so logs are collected too.
    let cargo = fake_cargo(&f, "exit 100");
    printed
        .push(("ci-native", f.xtask("s", &["ci-native"]).env("CARGO", &cargo).output().unwrap()));
    for (what, out) in &printed {
        for stream in [&out.stdout, &out.stderr] {
            assert!(
                !String::from_utf8_lossy(stream).contains(&password),
                "{what} printed the password"
            );
        }
    }
    let logs: Vec<PathBuf> = ["logs", "ci-logs"]
        .iter()
        .flat_map(|dir| std::fs::read_dir(f.state("s").join(dir)).into_iter().flatten().flatten())
        .map(|e| e.path())
        .collect();
    assert!(logs.len() >= 4, "no logs to check: {logs:?}");
    for log in logs {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(!text.contains(&password), "{} holds the password", log.display());
    }
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

#[test]
fn a_service_whose_port_is_taken_as_it_starts_gets_another() {
    let f = Fixture::new("porttaken");
    let once = f.dir.join("port-taken-once");
    let once = once.display().to_string();
    f.manifest(&f.fake(
        "orchestration",
        "tasker-orchestration",
        &[("FAKE_PORT_TAKEN_ONCE", &once)],
        "",
    ));
    let out = f.run("s", &["services", "up"]);
    assert!(out.status.success(), "a lost port was reported as a crash: {}", stderr(&out));
    assert!(stderr(&out).contains("lost its port to another program"), "{}", stderr(&out));
    f.down("s");
    f.assert_nothing_left("s");
}

#[test]
fn every_pipeline_run_is_recorded_and_reported() {
    let f = Fixture::new("history");
    f.two_services();
    let cargo = fake_cargo(&f, "exit 0");
    let out = f.xtask("s", &["ci-native"]).env("CARGO", &cargo).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    // A run whose service crashes at start.
    f.manifest(&f.fake("orchestration", "tasker-orchestration", &[("FAKE_CRASH", "1")], ""));
    let out = f.xtask("s", &["ci-native"]).env("CARGO", &cargo).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    // A mistake in the input is not a run.
    let out = f.xtask("s", &["ci-native", "--only-typo"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));

    let history = std::fs::read_to_string(f.dir.join("history.jsonl")).unwrap();
    let records: Vec<serde_json::Value> =
        history.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(records.len(), 2, "{history}");
    assert_eq!(records[0]["mode"], "native");
    assert_eq!(records[0]["outcome"], "passed");
    let phases: Vec<&str> = records[0]["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert!(phases.contains(&"database") && phases.contains(&"tests"), "{phases:?}");
    assert_eq!(records[1]["outcome"], "startup-failed");
    assert_eq!(records[1]["startup_failure"]["service"], "orchestration");

    let report = Command::new(support::XTASK)
        .args(["ci-report", "--output"])
        .arg(f.dir.join("report"))
        .env("TASKER_CI_HISTORY", f.dir.join("history.jsonl"))
        .env_remove("GITHUB_STEP_SUMMARY")
        .output()
        .unwrap();
    assert!(report.status.success(), "{}", stderr(&report));
    let text = String::from_utf8_lossy(&report.stdout);
    assert!(text.contains("| native | 2 | 50% |"), "{text}");
    let svg = std::fs::read_to_string(f.dir.join("report/runs.svg")).unwrap();
    // Both runs started a database; only the first reached its tests.
    assert_eq!(svg.matches("<title>native database:").count(), 2, "{svg}");
    assert_eq!(svg.matches("<title>native tests:").count(), 1, "{svg}");
    f.assert_nothing_left("s");
}

/// A `ruby` that fails, first on PATH: Ruby as good as missing.
fn path_without_ruby(f: &Fixture) -> std::ffi::OsString {
    let bin = f.dir.join("no-ruby-bin");
    std::fs::create_dir_all(&bin).unwrap();
    let ruby = bin.join("ruby");
    std::fs::write(&ruby, "#!/bin/sh\nexit 1\n").unwrap();
    std::fs::set_permissions(&ruby, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let rest = std::env::var_os("PATH").unwrap_or_default();
    std::env::join_paths(std::iter::once(bin).chain(std::env::split_paths(&rest))).unwrap()
}

#[test]
fn without_ruby_and_with_no_install_both_commands_stop_before_building() {
    let f = Fixture::new("noruby");
    let manifest = f.two_services();
    let mut text = std::fs::read_to_string(&manifest).unwrap();
    text.push_str(
        r#"
[services.ruby-worker]
command = ["ruby"]
args = ["{port}"]
requires = ["ruby"]
health = { path = "/health", service = "tasker-worker" }
"#,
    );
    std::fs::write(&manifest, text).unwrap();
    let cargo = fake_cargo(&f, "exit 0");
    let path = path_without_ruby(&f);
    let expect = |out: &std::process::Output| {
        let err = stderr(out);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(
            err.starts_with("error: missing Ruby with Fiddle, minitest and bundler: run `"),
            "{err}"
        );
        assert!(
            err.contains("apt-get install -y -q --no-install-recommends ruby ruby-bundler`"),
            "{err}"
        );
        assert!(err.trim_end().ends_with("(--no-install)"), "{err}");
    };
    let native = f
        .xtask("s", &["ci-native", "--no-install"])
        .env("CARGO", &cargo)
        .env("PATH", &path)
        .output()
        .unwrap();
    expect(&native);
    // `cargo xtask test` (the environment variable instead of the flag this time).
    let test = Command::new(XTASK)
        .arg("test")
        .env("CARGO", &cargo)
        .env("PATH", &path)
        .env("TASKER_XTASK_NO_INSTALL", "1")
        .env_remove("DATABASE_URL")
        .env_remove("CI")
        .env("TASKER_CI_HISTORY", f.dir.join("history.jsonl"))
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let err = stderr(&test);
    // The header of the pre-flight phase, then the one error line.
    let error_lines: Vec<&str> = err.lines().filter(|l| !l.starts_with("==> ")).collect();
    assert_eq!(error_lines.len(), 1, "{err}");
    expect(&std::process::Output { stderr: error_lines[0].as_bytes().to_vec(), ..test });
    // Nothing was built: cargo was only asked whether nextest is there.
    let calls = std::fs::read_to_string(f.dir.join("cargo-calls")).unwrap_or_default();
    assert!(calls.lines().all(|call| call == "nextest --version"), "{calls}");
    f.assert_nothing_left("s");
}
