//! The throwaway database belongs to the session: another local account can use it
//! neither over TCP (a password is required) nor through its socket (a private
//! directory), and its password appears in no printed output and no log.

use std::path::PathBuf;
use std::process::{Command, Output};

use xtask::sys::secrets::password_of;

use crate::support::{Fixture, fake_cargo, read_state, stderr};

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

/// The reproduction: while services run, another local account must not reach
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
    let without_password = url.replacen(&format!(":{}@", password_of(&url).unwrap()), "@", 1);
    let users: Vec<Option<&str>> =
        if xtask::sys::host::is_root() { vec![None, Some("nobody")] } else { vec![None] };
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
    if !xtask::sys::host::is_root() {
        eprintln!("note: not root: the other-account part (runuser) was not run");
    }
    assert!(!marker.exists(), "the attack ran a program as the server's account");
    f.down("s");
    f.assert_nothing_left("s");
}

#[test]
fn the_database_password_is_in_no_printed_output_and_no_log() {
    let f = Fixture::new("dbsecret");
    f.two_services();
    let mut printed = Vec::new();
    let up = f.up("s");
    let url = database_url(&f, "s");
    let password = password_of(&url).expect("a password in the URL");
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
                !String::from_utf8_lossy(stream).contains(password),
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
        assert!(!text.contains(password), "{} holds the password", log.display());
    }
    f.assert_nothing_left("s");
}
