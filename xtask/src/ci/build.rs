//! The pipeline's builds: every binary the services run and the end-to-end tests, here
//! (`build`) or once for other machines (`ci-archive`: `archive`, and `restore` where the
//! archive arrives). Which test binaries a run uses is [`TestBinaries`].

use std::path::Path;

use anyhow::Context as _;

use crate::services::{manifest, plan};
use crate::sys::process::run_cargo;
use crate::sys::{error, interrupts, paths};

/// The end-to-end tests: the root package's test targets `e2e_*`, behind its
/// `test-services` feature, selected from the whole workspace (see [`build_commands`]).
const TEST_FEATURE: &str = "tasker-core/test-services";
const TEST_TARGETS: &str = "e2e_*";

/// The nextest archive of the end-to-end tests, inside an archive directory.
pub const TESTS_ARCHIVE: &str = "tests.tar.zst";
/// The cargo outputs the services run (binaries, the FFI library), inside it.
const BIN_DIR: &str = "bin";

/// Where the end-to-end test binaries come from.
#[derive(Debug, Clone, Copy)]
pub enum TestBinaries<'a> {
    /// Built in this workspace (`--workspace --features tasker-core/test-services --test e2e_*`).
    Workspace { release: bool },
    /// A nextest archive made elsewhere, run against this checkout.
    Archive { file: &'a Path, root: &'a Path },
}

impl TestBinaries<'_> {
    pub fn selection(&self) -> Vec<String> {
        match self {
            TestBinaries::Workspace { release } => {
                let mut args: Vec<String> =
                    ["--workspace", "--features", TEST_FEATURE, "--test", TEST_TARGETS]
                        .map(String::from)
                        .to_vec();
                if *release {
                    args.push("--release".into());
                }
                args
            }
            TestBinaries::Archive { file, root } => vec![
                "--archive-file".into(),
                file.display().to_string(),
                "--workspace-remap".into(),
                root.display().to_string(),
            ],
        }
    }
}

/// Builds every cargo binary the manifest starts, then the test binaries; the test run
/// afterwards reuses them.
pub fn build(release: bool) -> anyhow::Result<()> {
    for args in build_commands(release) {
        run_cargo(&args)?;
    }
    Ok(())
}

/// `cargo xtask ci-archive`: builds what the pipeline needs once, for other machines:
/// `<output>/tests.tar.zst` (the end-to-end tests, a nextest archive) and `<output>/bin/`
/// (every cargo output the services run). `--from-archive <output>` runs from it.
pub fn archive(manifest_path: &Path, release: bool, output: &Path) -> anyhow::Result<()> {
    interrupts::catch_interrupts();
    let manifest = manifest::load(manifest_path)?;
    let mut commands = build_commands(release);
    commands.pop(); // the tests go into the archive instead
    for args in &commands {
        run_cargo(args)?;
    }
    let _ = std::fs::remove_dir_all(output);
    std::fs::create_dir_all(output.join(BIN_DIR))?;
    let mut args: Vec<String> =
        ["nextest", "archive", "--profile", "ci"].map(String::from).to_vec();
    args.extend(TestBinaries::Workspace { release }.selection());
    args.extend(["--archive-file".to_string(), output.join(TESTS_ARCHIVE).display().to_string()]);
    run_cargo(&args)?;
    let root = paths::root();
    let target = paths::target_dir();
    let options = plan::Options {
        only: &[],
        without: &[],
        release,
        fixed_ports: false,
        root: &root,
        target_dir: &target,
    };
    let plan = plan::plan(&manifest, &options, &plan::FilesHere).map_err(error::UserError)?;
    let mut copied = 0;
    for copy in plan::context_copies(&plan, &root) {
        if copy.to.starts_with(BIN_DIR) {
            std::fs::copy(&copy.from, output.join(&copy.to))
                .with_context(|| format!("copying {}", copy.from.display()))?;
            copied += 1;
        }
    }
    eprintln!(
        "xtask: archived the end-to-end tests and {copied} service file(s) in {}; run them elsewhere with `--from-archive {}`",
        paths::display_path(output),
        paths::display_path(output)
    );
    Ok(())
}

/// `cargo xtask ci-binary`: builds this xtask with TLS for the GitHub API (feature
/// `tls`) and copies the binary to `<output>/xtask`, for the jobs of a CI run that only
/// run xtask: they download it instead of compiling xtask themselves. It runs only in a
/// workspace at the path it was built in (compiled in; `sys::checkout` checks it).
pub fn xtask_binary(output: &Path) -> anyhow::Result<()> {
    interrupts::catch_interrupts();
    let args: Vec<String> = ["build", "--package", "xtask", "--bin", "xtask", "--features", "tls"]
        .map(String::from)
        .to_vec();
    run_cargo(&args)?;
    let built = paths::target_dir().join("debug").join("xtask");
    std::fs::create_dir_all(output).with_context(|| format!("creating {}", output.display()))?;
    let to = output.join("xtask");
    let _ = std::fs::remove_file(&to);
    std::fs::copy(&built, &to).with_context(|| format!("copying {}", built.display()))?;
    eprintln!(
        "xtask: the xtask binary (GitHub API over TLS) is {}; the jobs that download it run it in place of `cargo xtask`",
        paths::display_path(&to)
    );
    Ok(())
}

/// Puts an archive's service files where the plan looks for them (`target/<profile>/`),
/// executable (artifact transfers drop the mode).
pub fn restore(dir: &Path, release: bool) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let bin = dir.join(BIN_DIR);
    if !bin.is_dir() || !dir.join(TESTS_ARCHIVE).is_file() {
        crate::user_error!(
            "{} is not an archive of `cargo xtask ci-archive` (it needs {BIN_DIR}/ and {TESTS_ARCHIVE})",
            paths::display_path(dir)
        );
    }
    let profile = paths::target_dir().join(if release { "release" } else { "debug" });
    std::fs::create_dir_all(&profile)?;
    for entry in std::fs::read_dir(&bin)? {
        let entry = entry?;
        let to = profile.join(entry.file_name());
        let _ = std::fs::remove_file(&to);
        std::fs::copy(entry.path(), &to).with_context(|| format!("restoring {}", to.display()))?;
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o755))?;
    }
    Ok(())
}

/// The cargo invocations of [`build`]: every binary and library of the workspace, then
/// the end-to-end tests (nextest's `--no-run`). Both select the whole workspace, so
/// cargo unifies features exactly as for `cargo xtask test`'s unit tests: after those, this
/// compiles nothing but the end-to-end tests (a `-p` selection would build the shared
/// crates again with other features, about two dozen units).
pub fn build_commands(release: bool) -> Vec<Vec<String>> {
    vec![plan::build_args(release), no_run_args(release)]
}

/// `cargo nextest run --no-run`: builds the end-to-end tests.
pub fn no_run_args(release: bool) -> Vec<String> {
    let mut args: Vec<String> = ["nextest", "run", "--profile", "ci"].map(String::from).to_vec();
    args.extend(TestBinaries::Workspace { release }.selection());
    args.push("--no-run".into());
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every package of xtask's own graph, with the features `selection` turns on in it
    /// (`cargo tree`'s resolution: normal and build side alike).
    fn features_of(selection: &[&str]) -> std::collections::BTreeMap<String, Vec<String>> {
        use crate::sys::command::Run as _;
        let out = crate::sys::command::cargo()
            .args(["tree", "--offline", "--prefix", "none", "-f", "{p} [{f}]"])
            .args(selection)
            .read()
            .unwrap_or_else(|failure| panic!("{failure}"));
        let mut map = std::collections::BTreeMap::new();
        for line in out.lines() {
            let (package, rest) = line.split_once(" [").unwrap_or((line, ""));
            let features = rest.split(']').next().unwrap_or_default();
            let package = package.split(" (").next().unwrap_or(package).to_string();
            let features: Vec<String> =
                features.split(',').filter(|f| !f.is_empty()).map(String::from).collect();
            let entry: &mut Vec<String> = map.entry(package).or_default();
            entry.extend(features);
            entry.sort();
            entry.dedup();
        }
        map
    }

    /// `cargo xtask` builds xtask alone; the test build selects the whole workspace. When
    /// both turn on the same features in xtask's dependencies, the test build reuses what
    /// `cargo xtask` compiled (xtask's Cargo.toml declares the workspace's extra features
    /// for that). A feature the workspace adds later shows here.
    #[test]
    fn xtask_alone_and_the_whole_workspace_build_its_dependencies_alike() {
        let alone = features_of(&["-p", "xtask", "-e", "normal,build"]);
        let workspace = features_of(&[
            "--workspace",
            "--features",
            "tasker-core/test-services",
            "-e",
            "normal,build,dev",
        ]);
        let differ: Vec<String> = alone
            .iter()
            .filter(|(package, features)| workspace.get(*package) != Some(features))
            .map(|(package, features)| {
                format!("{package}: alone {features:?}, workspace {:?}", workspace.get(package))
            })
            .collect();
        assert!(alone.len() > 20, "{alone:?}");
        assert!(
            differ.is_empty(),
            "declare these features in xtask/Cargo.toml too:\n{}",
            differ.join("\n")
        );
    }

    #[test]
    fn the_build_selects_the_whole_workspace_like_the_unit_tests() {
        let commands: Vec<String> = build_commands(true).iter().map(|c| c.join(" ")).collect();
        assert_eq!(
            commands,
            [
                "build --workspace --bins --lib --release",
                "nextest run --profile ci --workspace --features tasker-core/test-services --test e2e_* --release --no-run"
            ]
        );
    }
}
