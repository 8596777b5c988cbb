//! Paths and processes shared by the tests that run Ruby against this library.

#![allow(dead_code)] // each test binary uses a different part

use std::path::PathBuf;
use std::process::Command;

/// The Ruby worker's directory (`workers/ruby`).
pub fn ruby_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("workers/ruby").to_path_buf()
}

pub fn workspace_root() -> PathBuf {
    ruby_dir().join("../..").canonicalize().expect("the workspace root")
}

/// The cdylib cargo built for this test run: it sits next to the test binary in
/// `target/<profile>/deps` (`cargo test` does not copy it up to `target/<profile>`), so the
/// Ruby side loads exactly the library under test, whatever CARGO_TARGET_DIR is.
pub fn library_path() -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let library = exe.with_file_name("libtasker_worker_ruby_ext.so");
    assert!(
        library.is_file(),
        "{} is missing: build it with `cargo build -p tasker-worker-ruby-ext`",
        library.display()
    );
    library
}

/// `ruby` with the library path set; panics with the install command when Ruby is missing.
pub fn ruby() -> Command {
    let found = Command::new("ruby").arg("--version").output();
    assert!(
        found.is_ok_and(|out| out.status.success()),
        "ruby is not installed: `cargo xtask test` installs it (or: apt-get install -y ruby ruby-bundler)"
    );
    let mut command = Command::new("ruby");
    command.env("TASKER_RUBY_EXT_PATH", library_path());
    command
}

use std::io::{BufRead, BufReader};
use std::process::{Child, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A `ruby workers/ruby/bin/server.rb` process started by a test; killed on drop if the
/// test did not stop it.
pub struct RubyWorker {
    child: Child,
    lines: mpsc::Receiver<String>,
    log: Arc<Mutex<Vec<String>>>,
    /// The threads copying stdout and stderr into `log`: an exit is only complete once
    /// they have read the pipes to their end.
    readers: Vec<std::thread::JoinHandle<()>>,
    pub instance_id: String,
}

impl RubyWorker {
    /// Starts the server with the generated worker test config, its own port and instance id.
    pub fn start(envs: &[(&str, String)]) -> RubyWorker {
        let instance_id = format!("ruby-test-{}", uuid::Uuid::new_v4().simple());
        let mut command = ruby();
        command
            .arg(ruby_dir().join("bin/server.rb"))
            .current_dir(std::env::temp_dir())
            .env(
                "TASKER_CONFIG_PATH",
                workspace_root().join("config/tasker/generated/worker-test.toml"),
            )
            .env("TASKER_TEMPLATE_PATH", workspace_root().join("config/tasks"))
            .env("TASKER_WEB_BIND_ADDRESS", "127.0.0.1:0")
            .env("TASKER_INSTANCE_ID", &instance_id)
            .env_remove("RUST_LOG")
            .envs(envs.iter().map(|(key, value)| (key, value)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("spawning ruby bin/server.rb");
        let (sender, lines) = mpsc::channel();
        let log = Arc::new(Mutex::new(Vec::new()));
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let mut readers = Vec::new();
        for stream in [Box::new(stdout) as Box<dyn std::io::Read + Send>, Box::new(stderr)] {
            let (sender, log) = (sender.clone(), log.clone());
            readers.push(std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    log.lock().unwrap().push(line.clone());
                    let _ = sender.send(line);
                }
            }));
        }
        RubyWorker { child, lines, log, readers, instance_id }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for an output line containing `needle`; panics with the whole log on timeout.
    pub fn wait_for_line(&self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => panic!(
                    "no line containing {needle:?} within {timeout:?}; output:\n{}",
                    self.log()
                ),
            }
        }
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Sends SIGTERM; returns the exit status and the time from the signal to the exit
    /// (panics if the process is still running after `timeout`).
    pub fn terminate(&mut self, timeout: Duration) -> (ExitStatus, Duration) {
        let sent = Instant::now();
        tasker_shared::testing::send_signal(self.pid(), "TERM");
        self.wait_exit(sent, timeout)
    }

    /// Waits for the process to exit by itself (e.g. after a startup error).
    pub fn wait_exit(&mut self, since: Instant, timeout: Duration) -> (ExitStatus, Duration) {
        loop {
            if let Some(status) = self.child.try_wait().expect("waiting for ruby") {
                let exited = since.elapsed();
                // The process is gone, but its last lines may still be in the pipes: the
                // log is whole once both readers reached the end (a grandchild holding a
                // pipe open would keep it from ending, hence the bound).
                let drained = Instant::now() + Duration::from_secs(5);
                while self.readers.iter().any(|r| !r.is_finished()) && Instant::now() < drained {
                    std::thread::sleep(Duration::from_millis(5));
                }
                return (status, exited);
            }
            if since.elapsed() > timeout {
                panic!("the Ruby worker did not exit within {timeout:?}; output:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for RubyWorker {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A port that was free a moment ago (bound to port 0, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("binding port 0")
        .port()
}
