//! Startup of `ruby workers/ruby/bin/server.rb`: failures are one clear message, exit
//! code 2, nothing left running; a SIGTERM while starting is a prompt exit 0. No database
//! needed.

mod support;

use std::time::{Duration, Instant};

use support::RubyWorker;
use tasker_shared::testing::UnresponsiveDatabase;

fn exit_of(worker: &mut RubyWorker) -> (Option<i32>, String) {
    let (status, _) = worker.wait_exit(Instant::now(), Duration::from_secs(20));
    (status.code(), worker.log())
}

#[test]
fn an_invalid_config_exits_2_with_the_loaders_message() {
    let dir =
        std::env::temp_dir().join(format!("ruby-worker-startup-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("worker.toml");
    std::fs::write(&config, "[database]\nurl = \"${NOT_ALLOWED_VARIABLE}\"\n").unwrap();
    let mut worker = RubyWorker::start(&[("TASKER_CONFIG_PATH", config.display().to_string())]);
    let (code, log) = exit_of(&mut worker);
    assert_eq!(code, Some(2), "output:\n{log}");
    assert!(log.contains("cannot start the worker runtime:"), "output:\n{log}");
    assert!(
        log.contains(&config.display().to_string()),
        "the message names the file; output:\n{log}"
    );
    assert!(
        log.contains("NOT_ALLOWED_VARIABLE"),
        "the message names the placeholder; output:\n{log}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_missing_config_path_variable_exits_2() {
    let mut worker = RubyWorker::start(&[("TASKER_CONFIG_PATH", String::new())]);
    let (code, log) = exit_of(&mut worker);
    assert_eq!(code, Some(2), "output:\n{log}");
    assert!(log.contains("TASKER_CONFIG_PATH is not set"), "output:\n{log}");
}

#[test]
fn a_missing_library_names_the_build_command() {
    let mut worker = RubyWorker::start(&[(
        "TASKER_RUBY_EXT_PATH",
        "/nonexistent/libtasker_worker_ruby_ext.so".into(),
    )]);
    let (code, log) = exit_of(&mut worker);
    assert_eq!(code, Some(2), "output:\n{log}");
    assert!(log.contains("cargo build -p tasker-worker-ruby-ext"), "output:\n{log}");
}

#[test]
fn the_log_never_shows_the_database_password() {
    // The worker logs its configuration first; the invalid bind address then stops it
    // before it tries to connect.
    let url =
        format!("postgresql://tasker:hunter2secret@127.0.0.1:{}/nowhere", support::free_port());
    let mut worker = RubyWorker::start(&[
        ("DATABASE_URL", url),
        ("TASKER_WEB_BIND_ADDRESS", "not-an-address".into()),
    ]);
    let (code, log) = exit_of(&mut worker);
    assert_eq!(code, Some(2), "output:\n{log}");
    assert!(log.contains("DATABASE_URL=postgresql://tasker:***@127.0.0.1:"), "output:\n{log}");
    assert!(!log.contains("hunter2secret"), "the password leaked:\n{log}");
}

#[test]
fn sigterm_while_the_runtime_starts_exits_0_promptly() {
    let database = UnresponsiveDatabase::bind();
    let mut worker = RubyWorker::start(&[("DATABASE_URL", database.url.clone())]);
    // The library is now inside its start, waiting for the database that never answers.
    let _connection = database.accept(Duration::from_secs(30));
    let (status, waited) = worker.terminate(Duration::from_secs(10));
    let log = worker.log();
    assert_eq!(status.code(), Some(0), "output:\n{log}");
    assert!(waited < Duration::from_secs(2), "exit took {waited:?}; output:\n{log}");
}
