//! The `tasker-server` binary: `migrate` is idempotent (also when two run at once),
//! bad configuration is one clear line with exit code 2, and SIGTERM/SIGINT end it with
//! exit code 0 within 2 s, also during startup.

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use tasker_shared::testing::{
    ChildProcess, TestDatabase, UnresponsiveDatabase, send_signal, wait_for_exit,
};

fn tasker_server(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tasker-server"));
    command
        .args(args)
        .env_remove("TASKER_CONFIG_PATH")
        .env_remove("DATABASE_URL")
        .env("RUST_LOG", "warn");
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("running tasker-server")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn migrate_twice_is_a_no_op_the_second_time() {
    let db = TestDatabase::create_empty().await;
    let first = tasker_server(&["migrate"], &[("DATABASE_URL", &db.url)]);
    assert!(first.status.success(), "{}", text(&first.stderr));
    assert!(text(&first.stdout).contains("2 new migration(s)"), "{}", text(&first.stdout));
    let second = tasker_server(&["migrate"], &[("DATABASE_URL", &db.url)]);
    assert!(second.status.success(), "{}", text(&second.stderr));
    assert!(text(&second.stdout).contains("0 new migration(s)"), "{}", text(&second.stdout));
    let ready: bool = sqlx::query_scalar(
        "SELECT to_regclass('tasker.workflow_steps') IS NOT NULL AND to_regnamespace('pgmq') IS NOT NULL",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert!(ready);
    db.drop_database().await;
}

#[tokio::test]
async fn concurrent_migrations_both_succeed() {
    let db = TestDatabase::create_empty().await;
    let url = db.url.clone();
    let runs: Vec<_> = (0..2)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || tasker_server(&["migrate"], &[("DATABASE_URL", &url)]))
        })
        .collect();
    for run in runs {
        let output = run.join().unwrap();
        assert!(output.status.success(), "{}", text(&output.stderr));
    }
    db.drop_database().await;
}

#[test]
fn missing_config_is_exit_2_naming_the_variable() {
    let output = tasker_server(&[], &[]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("TASKER_CONFIG_PATH is not set"), "{stderr}");
}

#[test]
fn invalid_bind_address_is_exit_2_naming_key_and_file() {
    let config = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../config/tasker/generated/orchestration-test.toml"
    );
    let output = tasker_server(
        &[],
        &[
            ("TASKER_CONFIG_PATH", config),
            ("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none"),
            ("TASKER_WEB_BIND_ADDRESS", "not-an-address"),
        ],
    );
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("orchestration.web.bind_address"), "{stderr}");
    assert!(stderr.contains("orchestration-test.toml"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn unknown_arguments_are_exit_2() {
    let output = tasker_server(&["--port", "8080"], &[]);
    assert_eq!(output.status.code(), Some(2));
}

/// `tasker-server` with the generated orchestration test config and templates, its output
/// piped.
fn spawn_server(database_url: &str) -> ChildProcess {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let child = Command::new(env!("CARGO_BIN_EXE_tasker-server"))
        .env(
            "TASKER_CONFIG_PATH",
            format!("{root}/config/tasker/generated/orchestration-test.toml"),
        )
        .env("TASKER_TEMPLATE_PATH", format!("{root}/config/tasks"))
        .env("TASKER_WEB_BIND_ADDRESS", "127.0.0.1:0")
        .env("DATABASE_URL", database_url)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting tasker-server");
    ChildProcess(child)
}

#[test]
fn sigterm_during_startup_exits_0_promptly() {
    let database = UnresponsiveDatabase::bind();
    let mut server = spawn_server(&database.url);
    // Startup now waits for the database that never answers.
    let _connection = database.accept(Duration::from_secs(30));
    send_signal(server.0.id(), "TERM");
    let (status, waited) = wait_for_exit(&mut server.0, Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{status}");
    assert!(waited < Duration::from_secs(2), "exit took {waited:?}");
}

#[tokio::test]
async fn sigint_while_serving_exits_0_promptly() {
    let db = TestDatabase::create().await;
    let mut server = spawn_server(&db.url);
    // Read stderr to the end (a closed pipe would fail the server's last log lines).
    let stderr = BufReader::new(server.0.stderr.take().unwrap());
    let (listening_tx, listening) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            if line.contains("tasker-orchestration listening") {
                let _ = listening_tx.send(());
            }
        }
    });
    listening.recv_timeout(Duration::from_secs(30)).expect("tasker-server listening");
    send_signal(server.0.id(), "INT");
    let (status, waited) = wait_for_exit(&mut server.0, Duration::from_secs(10));
    assert_eq!(status.code(), Some(0), "{status}");
    assert!(waited < Duration::from_secs(2), "exit took {waited:?}");
    db.drop_database().await;
}
