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
        "ruby is not installed: `apt-get install -y ruby` (.ci/run installs it)"
    );
    let mut command = Command::new("ruby");
    command.env("TASKER_RUBY_EXT_PATH", library_path());
    command
}
