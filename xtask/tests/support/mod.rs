//! What the xtask integration tests share: a fixture with its own directory (whose path
//! tags every process it starts), a manifest of `fake-service` services (a stand-in that
//! serves `/health` like the real services and misbehaves on request), the xtask binary
//! run against it, and a stand-in `cargo`.

#![allow(dead_code)] // each test binary uses part of it

use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const XTASK: &str = env!("CARGO_BIN_EXE_xtask");

/// A time limit of a test, scaled like every other wait: by
/// `TASKER_TEST_TIMEOUT_MULTIPLIER`, or 3 when `CI` is set (shared machines are slower).
pub use xtask::services::readiness::scaled;
/// How many rounds a stress test runs: `full` in the stress tier (`cargo xtask test
/// --stress`, which sets `TASKER_TEST_STRESS=1`), `short` otherwise.
pub fn stress_cycles(full: u32, short: u32) -> u32 {
    match std::env::var(xtask::test::STRESS_VAR).as_deref() {
        Ok("1") => full,
        _ => short,
    }
}

pub const FAKE: &str = env!("CARGO_BIN_EXE_fake-service");

pub struct Fixture {
    pub dir: PathBuf,
}

impl Fixture {
    pub fn new(name: &str) -> Fixture {
        let dir = std::env::temp_dir().join(format!("xtask-rel-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Fixture { dir }
    }

    pub fn state(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    pub fn manifest_path(&self) -> PathBuf {
        self.dir.join("services.toml")
    }

    /// Writes a manifest: a migrate step and `services` (TOML tables after `[services.x]`).
    pub fn manifest(&self, services: &str) -> PathBuf {
        let text = format!(
            r#"
[env]
DATABASE_URL = "{{database_url}}"
TASKER_INSTANCE_ID = "{{instance_id}}"

[migrate]
command = ["{FAKE}"]
args = ["migrate", "{tag}"]

{services}
"#,
            tag = self.dir.display()
        );
        std::fs::write(self.manifest_path(), text).unwrap();
        self.manifest_path()
    }

    /// A `[services.<name>]` table that runs fake-service (tagged with this fixture) as
    /// `identity`, with extra `env` entries and `more` lines of the table.
    pub fn fake(&self, name: &str, identity: &str, env: &[(&str, &str)], more: &str) -> String {
        let env: String = env.iter().map(|(k, v)| format!(", {k} = \"{v}\"")).collect();
        format!(
            r#"
[services.{name}]
command = ["{FAKE}"]
args = ["serve", "{tag}"]
env = {{ TASKER_WEB_BIND_ADDRESS = "{{bind_host}}:{{port}}", FAKE_IDENTITY = "{identity}"{env} }}
health = {{ path = "/health", service = "{identity}" }}
{more}
"#,
            tag = self.dir.display()
        )
    }

    /// An orchestration-like and a worker-like fake service.
    pub fn two_services(&self) -> PathBuf {
        self.manifest(
            &[
                self.fake(
                    "orchestration",
                    "tasker-orchestration",
                    &[],
                    r#"export = "TASKER_TEST_ORCHESTRATION_URL""#,
                ),
                self.fake(
                    "worker",
                    "tasker-worker",
                    &[("ORCH", "{url:orchestration}")],
                    "depends_on = [\"orchestration\"]\nexport = \"TASKER_TEST_WORKER_URL\"",
                ),
            ]
            .concat(),
        )
    }

    pub fn xtask(&self, state: &str, args: &[&str]) -> Command {
        // The shared options go before a `--` (after it, arguments belong to nextest).
        let split = args.iter().position(|a| *a == "--").unwrap_or(args.len());
        let mut cmd = Command::new(XTASK);
        cmd.args(&args[..split])
            .arg("--state-dir")
            .arg(self.state(state))
            .arg("--manifest")
            .arg(self.manifest_path())
            .args(&args[split..])
            .env_remove("DATABASE_URL")
            .env_remove("GITHUB_ACTIONS")
            .env_remove("GITHUB_ENV")
            .env_remove("GITHUB_STEP_SUMMARY")
            .env_remove("CI")
            // The runs of the tests go into a history of their own, not the workspace's.
            .env("TASKER_CI_HISTORY", self.dir.join("history.jsonl"))
            .stdin(Stdio::null());
        cmd
    }

    pub fn run(&self, state: &str, args: &[&str]) -> Output {
        self.xtask(state, args).output().unwrap()
    }

    /// Starts `cmd` in its own process group (so our signals reach only it), its output
    /// in `<fixture>/background.log`.
    pub fn background(&self, cmd: &mut Command) -> std::process::Child {
        let log = std::fs::File::create(self.dir.join("background.log")).unwrap();
        cmd.stdout(log.try_clone().unwrap()).stderr(log).process_group(0).spawn().unwrap()
    }

    pub fn up(&self, state: &str) -> Output {
        let out = self.run(state, &["services", "up"]);
        assert!(out.status.success(), "up failed: {}", String::from_utf8_lossy(&out.stderr));
        out
    }

    pub fn down(&self, state: &str) {
        let out = self.run(state, &["services", "down"]);
        assert!(out.status.success(), "down failed: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Processes whose command line mentions this fixture's directory.
    pub fn leftovers(&self) -> Vec<String> {
        let tag = self.dir.display().to_string();
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(&tag) {
                found.push(format!("{}: {cmdline}", entry.file_name().to_string_lossy()));
            }
        }
        found
    }

    pub fn assert_nothing_left(&self, state: &str) {
        // Teardown has returned, so everything must be gone; allow the kernel a moment to
        // finish reaping before we look.
        let deadline = Instant::now() + scaled(Duration::from_secs(2));
        while !self.leftovers().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(self.leftovers(), Vec::<String>::new(), "processes left behind");
        let state = self.state(state);
        assert!(!state.join("services.json").exists(), "state file left behind");
        let data: Vec<_> = std::fs::read_dir(xtask::services::database_files_of(&state))
            .into_iter()
            .flatten()
            .collect();
        assert!(data.is_empty(), "database data left behind: {data:?}");
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        for state in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            if state.path().join("services.json").exists() {
                let _ = Command::new(XTASK)
                    .args(["services", "down", "--state-dir"])
                    .arg(state.path())
                    .output();
            }
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Waits until `marker` exists (a file `child`'s fake tests or command create once they
/// run); fails when `child` ends first or `timeout` passes.
pub fn wait_for_marker(
    child: &mut std::process::Child,
    marker: &std::path::Path,
    timeout: Duration,
) {
    let deadline = Instant::now() + timeout;
    while !marker.exists() {
        assert!(Instant::now() < deadline, "{} never appeared", marker.display());
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the run ended ({status}) before {} appeared", marker.display());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// A stand-in for `cargo`: records its arguments, "builds" instantly, and runs the
/// "tests" as the test wants (sleep for a signal, pass, or fail).
pub fn fake_cargo(f: &Fixture, tests: &str) -> PathBuf {
    let script = f.dir.join("cargo");
    let calls = f.dir.join("cargo-calls");
    let text = format!(
        "#!/bin/sh\necho \"$@\" >> '{calls}'\ncase \"$*\" in\n  'nextest --version') exit 0 ;;\n  *--no-run*) exit 0 ;;\n  nextest*) env | grep '^TASKER_TEST_\\|^DATABASE_URL' | sort > '{calls}.env'; {tests} ;;\nesac\n",
        calls = calls.display()
    );
    std::fs::write(&script, text).unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    script
}

/// The state file of a session, as JSON.
pub fn read_state(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path.join("services.json")).unwrap()).unwrap()
}

/// Every port a native session listens on: its services' and the database's.
pub fn ports_of(state: &serde_json::Value) -> Vec<u16> {
    let mut ports: Vec<u16> = state["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["addr"].as_str().unwrap().rsplit(':').next().unwrap().parse().unwrap())
        .collect();
    ports.push(state["database"]["port"].as_u64().unwrap() as u16);
    ports
}

/// Whether nothing listens on `port` of 127.0.0.1 any more.
pub fn port_closed(port: u16) -> bool {
    TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200)).is_err()
}
