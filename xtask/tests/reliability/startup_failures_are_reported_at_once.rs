//! A service that cannot start fails the start at once, with its exit status and log
//! tail (a crash, a dependency dying while its dependents start), and only our own
//! process is ever taken for ready (not a foreign server on its port); a service whose
//! free port is taken as it starts gets another.

use std::time::{Duration, Instant};

use crate::support::{FAKE, Fixture, scaled, stderr};

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
