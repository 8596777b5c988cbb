//! The programs the test commands need from the machine, in one list, and how they get
//! there: probed before anything is built, installed where xtask may (apt-get on
//! Debian/Ubuntu as root, or with passwordless sudo in CI; cargo-nextest with
//! `cargo install --locked` into the user's cargo bin), each install announced in one
//! line; elsewhere, or with `--no-install`, one line with the exact command and exit 2.
//!
//! [`decide`] is pure (tested on every kind of host); [`ensure`] probes and installs.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::sys::command::{self, Run as _};
use crate::sys::error::UserError;
use crate::sys::{interrupts, process};

/// cargo-nextest's pinned version, spelled as both `cargo install` and the workflows'
/// install step (`tool:`) take it: the one place it is set (a test checks that every
/// workflow installs this one), so CI's jobs and a fresh machine run the same nextest.
pub const NEXTEST: &str = "cargo-nextest@0.9.143";

/// Something a test command needs that cargo does not build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Requirement {
    /// The PostgreSQL server binaries (`postgres`, `initdb`) for the throwaway database.
    Postgres,
    /// Ruby with Fiddle (the FFI), minitest (the Ruby worker's tests) and bundler.
    Ruby,
    /// cargo-nextest: runs the unit tests and the end-to-end tests.
    Nextest,
}

/// How a requirement is installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Apt(&'static [&'static str]),
    Cargo(&'static str),
}

impl Requirement {
    /// What a person calls it.
    pub fn describe(self) -> &'static str {
        match self {
            Requirement::Postgres => "the PostgreSQL server (postgres, initdb)",
            Requirement::Ruby => "Ruby with Fiddle, minitest and bundler",
            Requirement::Nextest => "cargo-nextest",
        }
    }

    fn source(self) -> Source {
        match self {
            Requirement::Postgres => Source::Apt(&["postgresql"]),
            // Debian's Ruby carries Fiddle and minitest; bundler is its own package.
            Requirement::Ruby => Source::Apt(&["ruby", "ruby-bundler"]),
            Requirement::Nextest => Source::Cargo(NEXTEST),
        }
    }

    /// The requirement that provides `program` (a manifest's `requires`), if one does.
    pub fn providing(program: &str) -> Option<Requirement> {
        match program {
            "ruby" | "bundle" => Some(Requirement::Ruby),
            "postgres" | "initdb" => Some(Requirement::Postgres),
            _ => None,
        }
    }

    /// Whether this machine has it.
    fn present(self) -> bool {
        match self {
            Requirement::Postgres => postgres_bindir().is_some(),
            Requirement::Ruby => Command::new("ruby")
                .args(["-e", "require 'fiddle'; require 'minitest'; require 'bundler'"])
                .succeeds(),
            Requirement::Nextest => nextest_installed(),
        }
    }
}

/// The directory of the PostgreSQL server binaries (`postgres`, `initdb`): PATH,
/// `pg_config --bindir`, the newest `/usr/lib/postgresql/*/bin`, then Homebrew's
/// locations.
pub fn postgres_bindir() -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> =
        std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect()).unwrap_or_default();
    if let Ok(bindir) = Command::new("pg_config").arg("--bindir").read() {
        candidates.push(PathBuf::from(bindir.trim()));
    }
    let mut debian: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let e = e.ok()?;
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            Some((version, e.path().join("bin")))
        })
        .collect();
    debian.sort();
    candidates.extend(debian.into_iter().rev().map(|(_, p)| p));
    for prefix in ["/opt/homebrew", "/usr/local"] {
        let mut brew: Vec<PathBuf> = std::fs::read_dir(format!("{prefix}/opt"))
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with("postgresql"))
            .map(|e| e.path().join("bin"))
            .collect();
        brew.sort();
        candidates.extend(brew.into_iter().rev());
    }
    candidates.into_iter().find(|dir| has_server(dir))
}

fn has_server(dir: &Path) -> bool {
    dir.join("postgres").is_file() && dir.join("initdb").is_file()
}

/// True when `cargo nextest` runs.
fn nextest_installed() -> bool {
    command::cargo().args(["nextest", "--version"]).succeeds()
}

/// What xtask may do on this machine.
#[derive(Debug, Clone, Copy, Default)]
pub struct Host {
    /// apt-get is the package manager (Debian, Ubuntu).
    pub apt: bool,
    /// Running as root.
    pub root: bool,
    /// In CI (`CI` set) with passwordless sudo: a throwaway runner that expects set-up.
    pub ci_sudo: bool,
    /// `--no-install` or `TASKER_XTASK_NO_INSTALL`: the user manages the machine.
    pub no_install: bool,
}

/// One install, as a command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Install {
    pub requirements: Vec<Requirement>,
    pub program: String,
    pub args: Vec<String>,
    /// `apt-get update` first when the install fails (a fresh machine's empty lists).
    pub apt: bool,
}

impl Install {
    pub fn command_line(&self) -> String {
        std::iter::once(self.program.as_str())
            .chain(self.args.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

fn apt_install(packages: &[&str], sudo: bool) -> (String, Vec<String>) {
    let mut args: Vec<String> =
        ["install", "-y", "-q", "--no-install-recommends"].map(String::from).to_vec();
    args.extend(packages.iter().map(|p| p.to_string()));
    if sudo {
        let mut with_sudo = vec!["-n".to_string(), "apt-get".to_string()];
        with_sudo.extend(args);
        ("sudo".into(), with_sudo)
    } else {
        ("apt-get".into(), args)
    }
}

/// The installs for `missing`, or why xtask will not make them: one line naming what is
/// missing and the exact commands. Nothing is installed unless everything can be.
pub fn decide(missing: &[Requirement], host: &Host) -> Result<Vec<Install>, String> {
    let mut missing = missing.to_vec();
    missing.sort();
    missing.dedup();
    if missing.is_empty() {
        return Ok(Vec::new());
    }
    let mut packages: Vec<&str> = Vec::new();
    let mut apt_needs = Vec::new();
    let mut installs = Vec::new();
    for &requirement in &missing {
        match requirement.source() {
            Source::Apt(names) => {
                packages.extend(names);
                apt_needs.push(requirement);
            }
            Source::Cargo(krate) => installs.push(Install {
                requirements: vec![requirement],
                program: "cargo".into(),
                args: ["install", "--locked", krate].map(String::from).to_vec(),
                apt: false,
            }),
        }
    }
    if !packages.is_empty() {
        let (program, args) = apt_install(&packages, !host.root);
        installs.insert(0, Install { requirements: apt_needs.clone(), program, args, apt: true });
    }
    let may_apt = host.apt && (host.root || host.ci_sudo);
    if !host.no_install && (apt_needs.is_empty() || may_apt) {
        return Ok(installs);
    }
    let names: Vec<&str> = missing.iter().map(|r| r.describe()).collect();
    let commands: Vec<String> = installs
        .iter()
        .map(|install| match install.apt {
            true if !host.apt => format!(
                "install {} with the system's package manager (Debian/Ubuntu: {})",
                install.requirements.iter().map(|r| r.describe()).collect::<Vec<_>>().join("; "),
                packages.join(" ")
            ),
            true => {
                let (program, args) = apt_install(&packages, !host.root);
                let line = format!("{program} {}", args.join(" "));
                // `sudo -n` is for scripts; a person types plain sudo.
                format!("`{}`", line.replacen("sudo -n ", "sudo ", 1))
            }
            false => format!("`{}`", install.command_line()),
        })
        .collect();
    let why = if host.no_install {
        "(--no-install)"
    } else {
        "(xtask installs system packages only as root, or in CI with passwordless sudo)"
    };
    Err(format!("missing {}: run {} {why}", names.join("; "), commands.join(" and ")))
}

static NO_INSTALL: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// `--no-install` for the rest of this process (the commands that take the flag call it).
pub fn forbid_installs() {
    NO_INSTALL.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// The environment variable that means `--no-install` for every command.
pub const NO_INSTALL_VAR: &str = "TASKER_XTASK_NO_INSTALL";

fn set(var: &str) -> bool {
    std::env::var(var).is_ok_and(|v| !v.is_empty() && v != "0" && v != "false")
}

fn host() -> Host {
    let root = crate::sys::host::is_root();
    let apt = std::path::Path::new("/etc/debian_version").exists()
        && crate::sys::host::which("apt-get").is_some();
    let ci_sudo = !root && set("CI") && Command::new("sudo").args(["-n", "true"]).succeeds();
    let no_install = NO_INSTALL.load(std::sync::atomic::Ordering::Relaxed) || set(NO_INSTALL_VAR);
    Host { apt, root, ci_sudo, no_install }
}

/// What this machine lacks of a list of requirements, and how xtask will install it.
pub struct Missing {
    requirements: Vec<Requirement>,
    installs: Vec<Install>,
}

/// What of `needed` is missing: `None` when nothing is; an error (one line, exit 2) when
/// something is and xtask may not install it.
pub fn check(needed: &[Requirement]) -> anyhow::Result<Option<Missing>> {
    let requirements: Vec<Requirement> = needed.iter().copied().filter(|r| !r.present()).collect();
    if requirements.is_empty() {
        return Ok(None);
    }
    let installs = decide(&requirements, &host()).map_err(UserError)?;
    Ok(Some(Missing { requirements, installs }))
}

/// Makes sure every one of `needed` is on this machine: installs what is missing where
/// xtask may, else fails with one line (exit 2) before anything was built.
pub fn ensure(needed: &[Requirement]) -> anyhow::Result<()> {
    match check(needed)? {
        Some(missing) => missing.install(),
        None => Ok(()),
    }
}

impl Missing {
    /// Runs each install, announced in one line, then checks that it worked.
    pub fn install(self) -> anyhow::Result<()> {
        let Missing { requirements: missing, installs } = self;
        for install in &installs {
            let what: Vec<&str> = install.requirements.iter().map(|r| r.describe()).collect();
            eprintln!("xtask: installing {}: {}", what.join("; "), install.command_line());
            // Installs take minutes: children this process owns, like a build.
            let owned = |command: &mut Command| {
                command.stdin(Stdio::null());
                process::run_owned(command, Duration::from_secs(10))
            };
            let run = || {
                // The cargo that runs us, whose `cargo nextest` the probe asks.
                let mut command = match install.program.as_str() {
                    "cargo" => command::cargo(),
                    program => Command::new(program),
                };
                command.args(&install.args);
                if install.apt {
                    command.env("DEBIAN_FRONTEND", "noninteractive").stdout(Stdio::null());
                }
                owned(&mut command)
            };
            let mut status = run()?;
            if !status.success() && install.apt {
                // A fresh machine has no package lists yet.
                let mut update = Command::new(&install.program);
                match install.program.as_str() {
                    "sudo" => update.args(["-n", "apt-get", "update", "-q"]),
                    _ => update.args(["update", "-q"]),
                };
                let _ = owned(update.stdout(Stdio::null()));
                status = run()?;
            }
            if !status.success() {
                anyhow::bail!("`{}` failed ({status})", install.command_line());
            }
            interrupts::check_interrupted()?;
        }
        let still: Vec<&str> =
            missing.iter().filter(|r| !r.present()).map(|r| r.describe()).collect();
        if !still.is_empty() {
            anyhow::bail!("installed, but still not found: {}", still.join("; "));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Requirement::*;

    const ROOT_DEBIAN: Host = Host { apt: true, root: true, ci_sudo: false, no_install: false };

    fn lines(installs: &[Install]) -> Vec<String> {
        installs.iter().map(Install::command_line).collect()
    }

    #[test]
    fn nothing_missing_means_nothing_to_do() {
        assert_eq!(decide(&[], &Host::default()), Ok(Vec::new()));
    }

    #[test]
    fn root_on_debian_installs_packages_in_one_apt_run_then_nextest() {
        let installs = decide(&[Nextest, Ruby, Postgres], &ROOT_DEBIAN).unwrap();
        assert_eq!(
            lines(&installs),
            [
                "apt-get install -y -q --no-install-recommends postgresql ruby ruby-bundler"
                    .to_string(),
                format!("cargo install --locked {NEXTEST}")
            ]
        );
    }

    #[test]
    fn ci_with_passwordless_sudo_installs_through_sudo() {
        let host = Host { apt: true, root: false, ci_sudo: true, no_install: false };
        let installs = decide(&[Ruby], &host).unwrap();
        assert_eq!(
            lines(&installs),
            ["sudo -n apt-get install -y -q --no-install-recommends ruby ruby-bundler"]
        );
    }

    #[test]
    fn a_developer_without_root_gets_the_command_and_nothing_is_installed() {
        let host = Host { apt: true, root: false, ci_sudo: false, no_install: false };
        let why = decide(&[Ruby, Nextest], &host).unwrap_err();
        assert_eq!(
            why,
            format!(
                "missing Ruby with Fiddle, minitest and bundler; cargo-nextest: run \
                 `sudo apt-get install -y -q --no-install-recommends ruby ruby-bundler` and \
                 `cargo install --locked {NEXTEST}` (xtask installs system packages only as \
                 root, or in CI with passwordless sudo)"
            )
        );
        // cargo-nextest alone needs no root.
        assert_eq!(
            lines(&decide(&[Nextest], &host).unwrap()),
            [format!("cargo install --locked {NEXTEST}")]
        );
    }

    #[test]
    fn no_install_refuses_even_as_root_and_names_the_command() {
        let host = Host { no_install: true, ..ROOT_DEBIAN };
        let why = decide(&[Ruby], &host).unwrap_err();
        assert!(
            why.starts_with("missing Ruby with Fiddle, minitest and bundler: run `apt-get install"),
            "{why}"
        );
        assert!(why.ends_with("(--no-install)"), "{why}");
        assert!(decide(&[Nextest], &host).is_err());
        assert!(!why.contains('\n'));
    }

    #[test]
    fn without_apt_the_packages_are_named_for_any_package_manager() {
        let host = Host { apt: false, root: true, ci_sudo: false, no_install: false };
        let why = decide(&[Postgres], &host).unwrap_err();
        assert!(
            why.contains(
                "install the PostgreSQL server (postgres, initdb) with the system's package manager"
            ),
            "{why}"
        );
    }

    #[test]
    fn manifest_programs_map_to_requirements() {
        assert_eq!(Requirement::providing("ruby"), Some(Ruby));
        assert_eq!(Requirement::providing("bundle"), Some(Ruby));
        assert_eq!(Requirement::providing("redis-server"), None);
    }
}
