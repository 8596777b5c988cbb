//! `cargo xtask deps --with-verification` interrupted while a removal is being checked:
//! the manifest and `Cargo.lock` must come back byte for byte, and it exits 130.
//! Runs the real binary on a fixture workspace in a temp dir, with its own target dir.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

fn fixture(dir: &Path) -> PathBuf {
    write(
        &dir.join("ext/unused/Cargo.toml"),
        "[package]\nname = \"unused\"\nversion = \"0.1.0\"\nedition = \"2021\"\n[workspace]\n",
    );
    write(&dir.join("ext/unused/src/lib.rs"), "pub fn f() {}\n");
    write(&dir.join("ws/Cargo.toml"), "[workspace]\nmembers = [\"app\"]\nresolver = \"2\"\n");
    write(
        &dir.join("ws/app/Cargo.toml"),
        "[package]\nname = \"app\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\nunused = { path = \"../../ext/unused\" } # planted\n",
    );
    // Enough code that checking it takes a moment: the signal must land mid-check.
    let mut lib = String::new();
    for i in 0..3000 {
        lib.push_str(&format!(
            "pub fn f{i}(x: u64) -> u64 {{ x.wrapping_mul({i}).rotate_left(3) ^ {i} }}\n"
        ));
    }
    write(&dir.join("ws/app/src/lib.rs"), &lib);
    dir.join("ws")
}

fn interrupted_run_restores(signal: &str) {
    let dir =
        std::env::temp_dir().join(format!("xtask-deps-interrupt-{signal}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let ws = fixture(&dir);
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let target = dir.join("target");
    let status = Command::new(&cargo)
        .args(["generate-lockfile", "--offline", "--manifest-path"])
        .arg(ws.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", &target)
        .status()
        .unwrap();
    assert!(status.success());
    let manifest = ws.join("app/Cargo.toml");
    let lock = ws.join("Cargo.lock");
    let (manifest_before, lock_before) =
        (std::fs::read(&manifest).unwrap(), std::fs::read(&lock).unwrap());

    let mut child = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(["deps", "--with-verification", "--allow-dirty", "--offline", "--manifest-path"])
        .arg(ws.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", &target)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let mut edited = false;
    while start.elapsed() < Duration::from_secs(300) && child.try_wait().unwrap().is_none() {
        if std::fs::read(&manifest).unwrap() != manifest_before {
            edited = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(edited, "the removal was never applied");
    let signalled = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(signalled.success());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "stderr: {stderr}");
    assert!(stderr.contains("interrupted: restored"), "{stderr}");
    assert_eq!(
        std::fs::read(&manifest).unwrap(),
        manifest_before,
        "manifest restored byte for byte"
    );
    assert_eq!(std::fs::read(&lock).unwrap(), lock_before, "Cargo.lock restored byte for byte");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn sigterm_during_a_check_restores_every_file() {
    interrupted_run_restores("TERM");
}

#[test]
fn sigint_during_a_check_restores_every_file() {
    interrupted_run_restores("INT");
}
