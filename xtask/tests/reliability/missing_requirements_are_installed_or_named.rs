//! What the machine lacks is installed where xtask may, announced in one line, before
//! anything is built; elsewhere (or with `--no-install`) one line names the command to
//! run, and nothing starts. An optional service whose requirement is missing is left
//! out with a warning.

use std::process::Command;

use xtask::requirements::NEXTEST;

use crate::support::{Fixture, XTASK, fake_cargo, stderr};

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
    assert_eq!(
        stderr(&out).trim_end(),
        format!(
            "error: missing cargo-nextest: run `cargo install --locked {NEXTEST}` (--no-install)"
        )
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
             if [ \"$1 $2 $3\" = 'install --locked {NEXTEST}' ]; then touch {installed}; exit 0; fi\n\
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
        err.contains(&format!(
            "==> [0:00] install requirements\n\
             xtask: installing cargo-nextest: cargo install --locked {NEXTEST}"
        )),
        "{err}"
    );
    // Then the pipeline went on to its build (which this cargo fails).
    let calls = std::fs::read_to_string(&calls).unwrap();
    let order: Vec<&str> = calls.lines().collect();
    assert_eq!(
        order[..3],
        ["nextest --version", &format!("install --locked {NEXTEST}"), "nextest --version"],
        "{calls}"
    );
    assert!(order[3].starts_with("build --workspace"), "{calls}");
    assert_eq!(out.status.code(), Some(1), "{err}");
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
