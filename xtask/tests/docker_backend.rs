//! The Docker backend on a real Docker engine: real images (the fake service copied from
//! this build onto the base image), a real Compose project, real containers. Each test
//! has its own state directory, hence its own Compose project; "nothing left behind" is
//! checked by the state-directory label every container and network carries.
//!
//! These tests need a Docker engine, so they are ignored by a plain `cargo test`;
//! `cargo xtask test` runs them among the unit tests (`--run-ignored all`) where an engine
//! is reachable, and then they fail loudly if anything is missing. They run three at a
//! time (nextest test group `docker`): each builds images (tagged per project) and waits
//! on Docker more than it uses the CPU.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::{Fixture, fake_cargo, stderr, wait_for_marker};

/// Containers and networks labelled with this state directory.
fn docker_leftovers(state_dir: &Path) -> Vec<String> {
    let label = format!("label=org.tasker.xtask.state-dir={}", state_dir.display());
    let mut found = Vec::new();
    for what in [&["ps", "--all"][..], &["network", "ls"][..]] {
        let out = Command::new("docker")
            .args(what)
            .args(["--quiet", "--filter", &label])
            .output()
            .expect("docker runs");
        assert!(out.status.success(), "docker {what:?} failed: {}", stderr(&out));
        found.extend(
            String::from_utf8_lossy(&out.stdout).lines().map(|l| format!("{} {l}", what[0])),
        );
    }
    found
}

fn assert_no_containers_left(f: &Fixture, state: &str) {
    assert_eq!(docker_leftovers(&f.state(state)), Vec::<String>::new(), "left behind");
    assert!(!f.state(state).join("services.json").exists(), "state file left behind");
}

/// Removes what a failed test may have left, and the images its project built.
struct Cleanup<'a>(&'a Fixture, &'a str);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let state = self.0.state(self.1);
        let _ = Command::new(support::XTASK)
            .args(["services", "down", "--backend", "docker", "--state-dir"])
            .arg(&state)
            .output();
        let project = xtask::services::docker_project(&state);
        let _ = Command::new("docker")
            .args(["image", "rm", "--force"])
            .arg(format!("tasker-ci-app:{project}"))
            .arg(format!("tasker-ci-postgres:{project}"))
            .arg(empty_base(&project))
            .output();
    }
}

/// A base image without a shell, tagged per project and removed by [`Cleanup`]. It carries
/// our image label: when the failed build still holds it, the removal only untags it, and
/// the next build's prune of our untagged images takes it (one imported under a fixed tag
/// without the label was left behind by every run).
fn empty_base(project: &str) -> String {
    format!("tasker-xtask-test-empty:{project}")
}

fn up_docker(f: &Fixture, state: &str) -> std::process::Output {
    f.run(state, &["services", "up", "--backend", "docker", "--offline"])
}

#[test]
#[ignore = "needs a Docker engine; `cargo xtask test` runs it where one is reachable"]
fn up_exports_urls_that_answer_and_down_leaves_no_container_or_network() {
    let f = Fixture::new("docker-up");
    let _cleanup = Cleanup(&f, "s");
    f.two_services();
    let out = up_docker(&f, "s");
    assert!(out.status.success(), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("DATABASE_URL=postgres://postgres:"), "{stdout}");
    // The identity probe passed; the published port answers from the host.
    let url = stdout
        .lines()
        .find_map(|l| l.strip_prefix("TASKER_TEST_WORKER_URL=http://"))
        .expect("worker URL exported");
    assert!(url.starts_with("127.0.0.1:"), "published beyond loopback: {url}");
    std::net::TcpStream::connect(url).expect("the published port answers");
    assert!(!docker_leftovers(&f.state("s")).is_empty());

    let status = f.run("s", &["services", "status"]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains("backend        docker"), "{text}");
    assert_eq!(text.matches("healthy").count(), 2, "{text}");

    let out = f.run("s", &["services", "down"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_no_containers_left(&f, "s");
}

#[test]
#[ignore = "needs a Docker engine; `cargo xtask test` runs it where one is reachable"]
fn a_container_exiting_at_start_fails_at_once_with_its_exit_code_and_log() {
    let f = Fixture::new("docker-crash");
    let _cleanup = Cleanup(&f, "s");
    f.manifest(
        &[
            f.fake("orchestration", "tasker-orchestration", &[], ""),
            f.fake(
                "worker",
                "tasker-worker",
                &[("FAKE_CRASH", "1")],
                "depends_on = [\"orchestration\"]",
            ),
        ]
        .concat(),
    );
    let out =
        f.run("s", &["services", "up", "--backend", "docker", "--offline", "--timeout", "300"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    // "At once": the exit is the reported cause, not a readiness deadline that ran out
    // (no wall-clock bound: the first Docker test on a machine also builds the base image).
    assert!(err.contains("service `worker` exited during startup (exit code 3)"), "{err}");
    assert!(!err.contains("not ready after"), "found only at the deadline: {err}");
    assert!(err.contains("configured to crash at start"), "log tail missing: {err}");
    // The container's log was kept for CI.
    let log = std::fs::read_to_string(f.state("s").join("logs/worker.log")).unwrap();
    assert!(log.contains("configured to crash at start"), "{log}");
    assert_no_containers_left(&f, "s");
}

#[test]
#[ignore = "needs a Docker engine; `cargo xtask test` runs it where one is reachable"]
fn ci_docker_runs_the_tests_against_containers_and_saves_their_logs_on_failure() {
    let f = Fixture::new("docker-ci");
    let _cleanup = Cleanup(&f, "s");
    f.two_services();
    let cargo = fake_cargo(&f, "exit 0");
    let out = f.xtask("s", &["ci-docker", "--offline"]).env("CARGO", &cargo).output().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let env = std::fs::read_to_string(f.dir.join("cargo-calls.env")).unwrap();
    assert!(env.contains("TASKER_TEST_ORCHESTRATION_URL=http://127.0.0.1:"), "{env}");
    assert!(env.contains("DATABASE_URL=postgres://postgres:"), "{env}");
    let timings = std::fs::read_to_string(f.state("s").join("timings.json")).unwrap();
    for phase in ["images", "start", "ready", "tests", "teardown"] {
        assert!(timings.contains(&format!("\"{phase}\"")), "{phase} missing in {timings}");
    }
    assert_no_containers_left(&f, "s");

    let cargo = fake_cargo(&f, "exit 100");
    let out = f.xtask("s", &["ci-docker", "--offline"]).env("CARGO", &cargo).output().unwrap();
    assert_eq!(out.status.code(), Some(100), "{}", stderr(&out));
    for log in ["orchestration.log", "worker.log", "postgres.log", "migrate.log"] {
        let path = f.state("s").join("ci-logs/docker").join(log);
        assert!(path.exists(), "{log} not saved");
    }
    let orchestration =
        std::fs::read_to_string(f.state("s").join("ci-logs/docker/orchestration.log")).unwrap();
    assert!(orchestration.contains("fake-service starting"), "{orchestration}");
    assert_no_containers_left(&f, "s");
}

#[test]
#[ignore = "needs a Docker engine; `cargo xtask test` runs it where one is reachable"]
fn sigint_to_ci_docker_mid_run_leaves_nothing_behind() {
    let f = Fixture::new("docker-sigint");
    let _cleanup = Cleanup(&f, "s");
    f.two_services();
    let marker = f.dir.join("tests-running");
    let cargo = fake_cargo(&f, &format!("touch '{}'; exec sleep 60", marker.display()));
    let mut child = f.background(f.xtask("s", &["ci-docker", "--offline"]).env("CARGO", &cargo));
    wait_for_marker(&mut child, &marker, Duration::from_secs(300));
    assert!(!docker_leftovers(&f.state("s")).is_empty());
    // SAFETY: signalling the child we spawned.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    assert_eq!(child.wait().unwrap().code(), Some(128 + libc::SIGINT));
    assert_no_containers_left(&f, "s");
}

#[test]
#[ignore = "needs a Docker engine; `cargo xtask test` runs it where one is reachable"]
fn a_failing_image_build_names_the_image_and_the_step_and_starts_nothing() {
    let f = Fixture::new("docker-build");
    let _cleanup = Cleanup(&f, "s");
    f.two_services();
    // A base image without a shell: the first RUN step cannot start.
    let empty = &empty_base(&xtask::services::docker_project(&f.state("s")));
    let import = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "tar -cf - -T /dev/null | docker import --change 'LABEL org.tasker.xtask.image=test' - {empty}"
        ))
        .output()
        .unwrap();
    assert!(import.status.success(), "{}", stderr(&import));
    let out = f.run("s", &["services", "up", "--backend", "docker", "--base-image", empty]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let last = stderr(&out).lines().last().unwrap_or_default().to_string();
    assert!(last.starts_with("error: building image `tasker-ci-postgres:"), "{last}");
    // BuildKit (Compose v2) or the legacy builder (Compose v1) names the step.
    assert!(
        last.contains("step `[postgres 2/4] RUN") || last.contains("step `Step 3/10 : RUN"),
        "{last}"
    );
    assert!(last.contains("/bin/sh"), "the reason is missing: {last}");
    assert_no_containers_left(&f, "s");
    // Nor the container of the failed build step (the legacy builder keeps it unless told).
    let out = Command::new("docker")
        .args(["ps", "--all", "--quiet", "--filter", &format!("ancestor={empty}")])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "", "build containers left behind");
}

#[test]
#[ignore = "needs a Docker engine; `cargo xtask test` runs it where one is reachable"]
fn a_killed_run_is_found_by_its_label_and_removed_by_down() {
    let f = Fixture::new("docker-killed");
    let _cleanup = Cleanup(&f, "s");
    f.two_services();
    let out = up_docker(&f, "s");
    assert!(out.status.success(), "{}", stderr(&out));
    // As if the run had been killed before it could record anything.
    std::fs::remove_file(f.state("s").join("services.json")).unwrap();
    let again = up_docker(&f, "s");
    assert_eq!(again.status.code(), Some(2), "{}", stderr(&again));
    assert!(stderr(&again).contains("exist but no session records them"), "{}", stderr(&again));

    let out = f.run("s", &["services", "down", "--backend", "docker"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("removed 1 Compose project(s)"), "{}", stderr(&out));
    assert_no_containers_left(&f, "s");
}

/// A Ctrl-C while another run of this checkout builds images (and holds their lock) ends
/// the wait at once, with nothing started, instead of sitting out the other build.
#[test]
#[ignore = "needs a Docker engine; `cargo xtask test` runs it where one is reachable"]
fn sigint_while_another_run_builds_images_stops_the_wait() {
    let f = Fixture::new("docker-lock");
    let _cleanup = Cleanup(&f, "s");
    f.two_services();
    // Held as a run building images holds it: the same lock file, the same flock.
    let lock = xtask::sys::paths::xtask_dir().join("docker-image-build.lock");
    let held = xtask::sys::fs::lock_exclusive(&lock, "the test waits for a build to end")
        .expect("the image-build lock");
    let mut child = f.background(&mut f.xtask("s", &["services", "up", "--backend", "docker"]));
    let log = f.dir.join("background.log");
    // The first Docker test on a machine also builds the base image first: no tight bound.
    let waiting = xtask::sys::interrupts::wait_until(Duration::from_secs(300), || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        text.contains("waiting for another run that builds images")
            || child.try_wait().unwrap().is_some()
    });
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(waiting && child.try_wait().unwrap().is_none(), "never waited for the lock: {text}");
    // SAFETY: signalling the child we spawned.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    // Still holding the lock: the run can end only by giving up the wait.
    let ended = xtask::sys::interrupts::wait_until(Duration::from_secs(60), || {
        child.try_wait().unwrap().is_some()
    });
    drop(held);
    let status = child.wait().unwrap();
    assert!(ended, "still waiting 60 s after SIGINT: {}", std::fs::read_to_string(&log).unwrap());
    assert_eq!(status.code(), Some(128 + libc::SIGINT));
    assert_no_containers_left(&f, "s");
}
