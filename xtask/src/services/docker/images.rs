//! The images of a Docker run: the base (public when it can be pulled, else built
//! locally), the build context staged from the host's build (nothing is compiled in a
//! container), and the two service images built through Compose.

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context as _, bail};

use super::bootstrap::{self, OsRelease};
use super::generate::{self, DEFAULT_BASE_IMAGE, IMAGE_LABEL};
use crate::services::plan::Copy;
use crate::sys::command::Run as _;
use crate::sys::paths;

/// Where the base image comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BaseChoice {
    /// `--base-image`.
    Given(String),
    /// The public image of the host's release, already here.
    PublicPresent(String),
    /// The public image of the host's release, to be pulled.
    PublicPull(String),
    /// The locally built image.
    Local,
}

/// Picks the base image. Pure: what is present locally comes in as `present`.
pub fn choose_base(
    given: Option<&str>,
    offline: bool,
    os: &OsRelease,
    present: &dyn Fn(&str) -> bool,
) -> BaseChoice {
    if let Some(image) = given {
        return BaseChoice::Given(image.to_string());
    }
    match bootstrap::public_base(os) {
        Some(public) if !offline && present(&public) => BaseChoice::PublicPresent(public),
        Some(public) if !offline => BaseChoice::PublicPull(public),
        _ => BaseChoice::Local,
    }
}

/// The base image to build on, pulled or built when needed, and tagged as the default
/// base of the Compose file (so the file also runs by hand).
pub fn resolve_base(given: Option<&str>, offline: bool) -> anyhow::Result<String> {
    let os = bootstrap::os_release()?;
    let base = match choose_base(given, offline, &os, &bootstrap::image_exists) {
        BaseChoice::Given(image) => {
            if !bootstrap::image_exists(&image) && !pull(&image) {
                crate::user_error!("--base-image `{image}` is not here and cannot be pulled");
            }
            image
        }
        BaseChoice::PublicPresent(image) => image,
        BaseChoice::PublicPull(image) if pull(&image) => image,
        BaseChoice::PublicPull(image) => {
            let local = bootstrap::ensure(&os, false)?;
            eprintln!("xtask: base image {local} (built here: {image} cannot be pulled)");
            local
        }
        BaseChoice::Local => bootstrap::ensure(&os, false)?,
    };
    Command::new("docker").args(["tag", &base, DEFAULT_BASE_IMAGE]).succeeds();
    Ok(base)
}

fn pull(image: &str) -> bool {
    let pulled = Command::new("docker").args(["pull", "--quiet", image]).succeeds();
    if pulled {
        eprintln!("xtask: pulled {image}");
    }
    pulled
}

/// The build context: `app/` (the app Dockerfile and `files/`, laid out as `/app`) and
/// `postgres/` (its Dockerfile and entrypoint), made afresh from the generated files in
/// `docker_dir` and the copies the plan names. Files are hard links where possible.
pub fn stage(context: &Path, docker_dir: &Path, copies: &[Copy]) -> anyhow::Result<()> {
    let _ = std::fs::remove_dir_all(context);
    let app = context.join("app");
    let postgres = context.join("postgres");
    std::fs::create_dir_all(app.join("files"))?;
    std::fs::create_dir_all(&postgres)?;
    for (dir, name) in [
        (&app, generate::APP_DOCKERFILE),
        (&postgres, generate::POSTGRES_DOCKERFILE),
        (&postgres, generate::POSTGRES_ENTRYPOINT),
    ] {
        std::fs::copy(docker_dir.join(name), dir.join(name))
            .with_context(|| format!("staging {}", docker_dir.join(name).display()))?;
    }
    for copy in copies {
        let to = app.join("files").join(&copy.to);
        if !copy.from.exists() {
            crate::user_error!(
                "{} is named by the services manifest but does not exist",
                paths::display_path(&copy.from)
            );
        }
        link_tree(&copy.from, &to)
            .with_context(|| format!("staging {} for the app image", copy.from.display()))?;
    }
    Ok(())
}

/// Hard-links (or copies, across file systems) `from` to `to`; directories recursively,
/// leaving out hidden entries and `target` directories.
fn link_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    if from.is_dir() {
        std::fs::create_dir_all(to)?;
        for entry in std::fs::read_dir(from)? {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') || name == "target" || entry.file_type()?.is_symlink() {
                continue;
            }
            link_tree(&entry.path(), &to.join(&*name))?;
        }
        return Ok(());
    }
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent)?;
    }
    if std::fs::hard_link(from, to).is_err() {
        std::fs::copy(from, to)?;
    }
    Ok(())
}

/// Builds one image through Compose (`service` owns its build section), streaming the
/// output; on failure the error names the image and the step that failed.
pub fn build(
    mut compose: Command,
    build_args: &[&str],
    service: &str,
    image: &str,
    cold: bool,
) -> anyhow::Result<()> {
    compose.args(build_args);
    if cold {
        compose.arg("--no-cache");
    }
    compose.arg(service);
    let (reader, writer) = std::io::pipe()?;
    compose.stdin(Stdio::null()).stdout(writer.try_clone()?).stderr(writer);
    let mut child = compose.spawn().context("running docker compose build")?;
    // Our copies of the pipe's write end go, so the read below ends with the child.
    drop(compose);
    let mut last: Vec<String> = Vec::new();
    let mut err = std::io::stderr();
    for line in BufReader::new(reader).lines() {
        let line = line.unwrap_or_default();
        let _ = writeln!(err, "{line}");
        last.push(line);
        if last.len() > 200 {
            last.remove(0);
        }
    }
    let status = child.wait()?;
    if !status.success() {
        bail!("building image `{image}` failed: {}", failed_step(&last));
    }
    Ok(())
}

/// The failing step and the reason, from the end of a build's output (BuildKit's
/// `> [2/4] RUN ...` and `ERROR:` lines, or the legacy builder's `Step 2/4 : RUN ...`),
/// each cut to one readable line.
pub fn failed_step(output: &[String]) -> String {
    let step = output.iter().rev().find_map(|line| {
        let line = line.trim();
        if let Some(rest) = line.strip_prefix("> [") {
            return Some(format!("[{}", rest.trim_end_matches(':')));
        }
        line.strip_prefix("Step ").map(|rest| format!("Step {rest}"))
    });
    // The most telling line first: the step's own failure, then any error.
    let telling = [
        "did not complete successfully",
        "returned a non-zero code",
        "unable to start container process",
        "failed to solve",
        "ERROR",
    ];
    let reason = telling
        .iter()
        .find_map(|pattern| output.iter().rev().map(|l| l.trim()).find(|l| l.contains(pattern)))
        .or_else(|| {
            output.iter().rev().map(|l| l.trim()).find(|l| {
                let lower = l.to_lowercase();
                lower.contains("error") || lower.contains("failed")
            })
        });
    let short = |text: &str, chars: usize| match text.char_indices().nth(chars) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_string(),
    };
    match (step, reason) {
        (Some(step), Some(reason)) => {
            format!("step `{}`: {}", short(&step, 80), short(reason, 200))
        }
        (Some(step), None) => format!("step `{}` (the output above says why)", short(&step, 80)),
        (None, Some(reason)) => short(reason, 200),
        (None, None) => "see the output above".to_string(),
    }
}

/// Removes images of earlier builds that a new build left untagged (ours only).
pub fn prune_dangling() {
    Command::new("docker")
        .args(["image", "prune", "--force", "--filter"])
        .arg(format!("label={IMAGE_LABEL}"))
        .succeeds();
}

/// The context directory of a state directory.
pub fn context_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("docker-context")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bookworm() -> OsRelease {
        OsRelease { id: "debian".into(), version_id: "12".into(), codename: "bookworm".into() }
    }

    #[test]
    fn the_base_is_given_public_or_local() {
        let nothing = |_: &str| false;
        let public_here = |image: &str| image == "debian:bookworm-slim";
        assert_eq!(
            choose_base(Some("my/base:1"), true, &bookworm(), &nothing),
            BaseChoice::Given("my/base:1".into())
        );
        assert_eq!(
            choose_base(None, false, &bookworm(), &public_here),
            BaseChoice::PublicPresent("debian:bookworm-slim".into())
        );
        assert_eq!(
            choose_base(None, false, &bookworm(), &nothing),
            BaseChoice::PublicPull("debian:bookworm-slim".into())
        );
        assert_eq!(choose_base(None, true, &bookworm(), &public_here), BaseChoice::Local);
        let fedora =
            OsRelease { id: "fedora".into(), version_id: "40".into(), codename: String::new() };
        assert_eq!(choose_base(None, false, &fedora, &nothing), BaseChoice::Local);
    }

    #[test]
    fn a_failed_build_names_its_step() {
        let buildkit: Vec<String> = [
            "#7 [app 2/3] RUN false",
            "#7 ERROR: process \"/bin/sh -c false\" did not complete successfully: exit code: 1",
            "------",
            " > [app 2/3] RUN false:",
            "------",
            "failed to solve: process \"/bin/sh -c false\" did not complete successfully: exit code: 1",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            failed_step(&buildkit),
            "step `[app 2/3] RUN false`: failed to solve: process \"/bin/sh -c false\" did not complete successfully: exit code: 1"
        );
        let legacy: Vec<String> = [
            "Step 2/5 : RUN false",
            " ---> Running in 1234",
            "The command '/bin/sh -c false' returned a non-zero code: 1",
            "Service 'postgres' failed to build : Build failed",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            failed_step(&legacy),
            "step `Step 2/5 : RUN false`: The command '/bin/sh -c false' returned a non-zero code: 1"
        );
        let long = vec![format!("Step 3/10 : RUN {}", "x".repeat(300))];
        let text = failed_step(&long);
        assert!(text.len() < 120 && text.contains("..."), "{text}");
    }

    #[test]
    fn staging_links_trees_without_hidden_entries_or_target_dirs() {
        let dir = std::env::temp_dir().join(format!("xtask-stage-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let src = dir.join("src");
        std::fs::create_dir_all(src.join("lib")).unwrap();
        std::fs::create_dir_all(src.join("target/debug")).unwrap();
        std::fs::create_dir_all(src.join(".git")).unwrap();
        std::fs::write(src.join("lib/a.rb"), "a").unwrap();
        std::fs::write(src.join("target/debug/big"), "x").unwrap();
        std::fs::write(src.join(".git/HEAD"), "x").unwrap();
        link_tree(&src, &dir.join("out")).unwrap();
        assert_eq!(std::fs::read_to_string(dir.join("out/lib/a.rb")).unwrap(), "a");
        assert!(!dir.join("out/target").exists() && !dir.join("out/.git").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
