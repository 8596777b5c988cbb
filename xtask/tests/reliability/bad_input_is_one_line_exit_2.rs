//! Bad input (flags, manifests, a database or Docker engine that is not there) is one
//! `error:` line naming what is wrong and what to do, exit code 2, and nothing started.

use std::process::Output;

use crate::support::{FAKE, Fixture, stderr};

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
