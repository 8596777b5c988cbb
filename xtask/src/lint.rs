//! `cargo xtask lint`: every check that needs no test run, in one command: formatting,
//! clippy with warnings denied, unused dependencies, the generated files (configs and
//! the Docker files), the `cargo xtask` command lines of the docs, xtask's own module
//! layers ([`crate::layers`]), no test code in a target whose test build is off
//! ([`crate::test_builds`]), and the GitHub workflows (their xtask command lines
//! against this parser, the rules that make them hold on GitHub, and the workflow
//! linters `zizmor` and `check-jsonschema` when installed). Every check runs; the task
//! fails when any did.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::ci::build::TestBinaries;
use crate::sys::error::Exit;
use crate::sys::{host, interrupts, paths, process};

#[derive(clap::Args)]
#[command(after_help = "\
Checks, in order: cargo fmt --check; cargo clippy (all targets, warnings denied; where
RUSTC_WORKSPACE_WRAPPER is this checkout's .ci/bin/rustc-and-clippy, by its path or by
its name on PATH as .ci/run sets it, a build of all targets instead, in which the
wrapper lints each crate); cargo xtask deps; cargo xtask config --all --check; cargo
xtask docker generate --check; the workflows (their xtask command lines, and the rules
for re-runs, label events, cancellations, concurrency, the required check and the pins:
docs/ci.md, \"Rules the workflows follow\"); the docs' cargo xtask command lines;
xtask's module layers (no import upward, no module cycle); no test code in a target
whose test build is off (`test = false`); zizmor and check-jsonschema
on .github/workflows (skipped, and said so, when not installed; --install-linters
installs the pinned versions with pip, --require-linters makes a missing one a
failure).")]
pub struct Args {
    /// Fail when zizmor or check-jsonschema is not installed
    #[arg(long)]
    require_linters: bool,
    /// Install the missing workflow linters first (pinned versions, with pip)
    #[arg(long)]
    install_linters: bool,
}

/// The workflow linters, pinned: a new release's new findings arrive as a deliberate bump.
const LINTERS: &[(&str, &str)] =
    &[("zizmor", "zizmor==1.32.0"), ("check-jsonschema", "check-jsonschema==0.39.0")];

/// Installs the missing linters with pip (`python3 -m pip install --user` unless root).
fn install_linters() -> anyhow::Result<()> {
    let missing: Vec<&str> = LINTERS
        .iter()
        .filter(|(program, _)| crate::sys::host::which(program).is_none())
        .map(|(_, requirement)| *requirement)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("xtask: installing the workflow linters with pip: {}", missing.join(" "));
    let mut pip = Command::new("python3");
    pip.args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check"]);
    if !crate::sys::host::is_root() {
        pip.arg("--user");
    }
    pip.args(&missing).stdin(std::process::Stdio::null());
    let status = process::run_owned(&mut pip, std::time::Duration::from_secs(10))?;
    interrupts::check_interrupted()?;
    if !status.success() {
        crate::user_error!("`python3 -m pip install {}` failed ({status})", missing.join(" "));
    }
    Ok(())
}

/// One check: a command line, or the workflow command check run in process.
enum Check {
    Command { name: &'static str, program: PathBuf, args: Vec<String> },
    Linter { name: &'static str, program: &'static str, args: Vec<String>, install: &'static str },
    WorkflowCommands,
    DocCommands,
    ModuleLayers,
    TestBuilds,
}

/// Cargo's workspace wrapper that compiles each crate of the checkout with rustc while it
/// lints it with clippy (warnings denied). `.ci/run` sets it, so clippy needs no check build
/// of the dependencies: they are compiled once, and the tests reuse the linted build.
/// `.ci/run` names it by its file name, found on PATH.
const CLIPPY_WRAPPER: &str = ".ci/bin/rustc-and-clippy";

/// Whether cargo runs this checkout's [`CLIPPY_WRAPPER`] for the workspace's crates:
/// `wrapper` is `RUSTC_WORKSPACE_WRAPPER` (or `CARGO_BUILD_RUSTC_WORKSPACE_WRAPPER`) and
/// `search_path` is PATH, as cargo reads them: a value with a `/` is a path, a bare name is
/// looked up on PATH. Any other wrapper, or none, leaves the lint to `cargo clippy`.
fn clippy_in_build(wrapper: Option<&OsStr>, search_path: Option<&OsStr>, root: &Path) -> bool {
    let Some(wrapper) = wrapper.filter(|w| !w.is_empty()) else { return false };
    let program = match wrapper.as_bytes().contains(&b'/') {
        true => PathBuf::from(wrapper),
        false => match search_path.and_then(|p| host::which_in(wrapper, p)) {
            Some(found) => found,
            None => return false,
        },
    };
    match (std::fs::canonicalize(program), std::fs::canonicalize(root.join(CLIPPY_WRAPPER))) {
        (Ok(program), Ok(ours)) => program == ours,
        _ => false,
    }
}

/// The clippy check's cargo commands: all targets with the end-to-end tests' feature,
/// warnings denied. With the wrapper, builds of the same targets (`cargo test --no-run`):
/// the wrapper lints each crate, and the runs that follow find it all built. They select
/// what those runs build, so nothing is compiled for one of them alone: the unit tests'
/// targets (`cargo test`'s own selection, no feature, as nextest builds them: examples are
/// built, not compiled as tests as `--all-targets` would), then the end-to-end tests with
/// their feature (as the pipeline's build selects them). One build of `--all-targets` with
/// the feature left `test` to compile the root package again (1.3 s of every run).
fn clippy_commands(in_build: bool) -> Vec<(&'static str, Vec<String>)> {
    let strings = |args: &[&str]| args.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    if !in_build {
        return vec![(
            "clippy",
            strings(&[
                "clippy",
                "--workspace",
                "--all-targets",
                "--features",
                "tasker-core/test-services",
                "--quiet",
                "--",
                "-D",
                "warnings",
            ]),
        )];
    }
    let mut end_to_end = strings(&["test", "--no-run"]);
    end_to_end.extend(TestBinaries::Workspace { release: false }.selection());
    end_to_end.push("--quiet".into());
    vec![
        (
            "clippy (in the build, by RUSTC_WORKSPACE_WRAPPER)",
            strings(&["test", "--no-run", "--workspace", "--quiet"]),
        ),
        ("clippy (in the build of the end-to-end tests)", end_to_end),
    ]
}

fn checks() -> Vec<Check> {
    let wrapper = std::env::var_os("RUSTC_WORKSPACE_WRAPPER")
        .or_else(|| std::env::var_os("CARGO_BUILD_RUSTC_WORKSPACE_WRAPPER"));
    let clippy_in_build =
        clippy_in_build(wrapper.as_deref(), std::env::var_os("PATH").as_deref(), &paths::root());
    let cargo = PathBuf::from(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    let xtask = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("xtask"));
    let strings = |args: &[&str]| args.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    let workflows: Vec<String> =
        paths::workflow_files().iter().map(|p| p.display().to_string()).collect();
    let mut schema_args = strings(&["--builtin-schema", "vendor.github-workflows"]);
    schema_args.extend(workflows.iter().cloned());
    let mut checks = vec![Check::Command {
        name: "rustfmt",
        program: cargo.clone(),
        args: strings(&["fmt", "--all", "--check"]),
    }];
    for (name, args) in clippy_commands(clippy_in_build) {
        checks.push(Check::Command { name, program: cargo.clone(), args });
    }
    checks.extend([
        Check::Command {
            name: "unused dependencies",
            program: xtask.clone(),
            args: strings(&["deps"]),
        },
        Check::Command {
            name: "generated configs",
            program: xtask.clone(),
            args: strings(&["config", "--all", "--check"]),
        },
        Check::Command {
            name: "generated Docker files",
            program: xtask,
            args: strings(&["docker", "generate", "--check"]),
        },
        Check::WorkflowCommands,
        Check::DocCommands,
        Check::ModuleLayers,
        Check::TestBuilds,
        Check::Linter {
            name: "zizmor",
            program: "zizmor",
            args: strings(&["--offline", "--no-progress", ".github/workflows"]),
            install: "pip install zizmor",
        },
        Check::Linter {
            name: "workflow schema",
            program: "check-jsonschema",
            args: schema_args,
            install: "pip install check-jsonschema",
        },
    ]);
    checks
}

/// `tree` is the command tree (`Cli`'s) that the workflows' and the docs' command lines
/// must parse with: handed down, since the tree is the layer above.
pub fn run(args: Args, tree: &clap::Command) -> anyhow::Result<()> {
    interrupts::catch_interrupts();
    if args.install_linters {
        install_linters()?;
    }
    let mut failed: Vec<&str> = Vec::new();
    let mut skipped: Vec<String> = Vec::new();
    for check in checks() {
        let started = Instant::now();
        let (name, ok) = match check {
            Check::Command { name, program, args } => {
                eprintln!("==> {name}: {} {}", program.display(), args.join(" "));
                (name, run_command(&program, &args)?)
            }
            Check::Linter { name, program, args, install } => {
                if crate::sys::host::which(program).is_none() {
                    let note = format!("{name} ({program} is not installed: {install})");
                    eprintln!("==> {name}: skipped: {program} is not installed ({install})");
                    skipped.push(note);
                    continue;
                }
                eprintln!("==> {name}: {program} {}", args.join(" "));
                (name, run_command(Path::new(program), &args)?)
            }
            Check::WorkflowCommands => listed(
                "workflows",
                "every run step is an xtask call this parser accepts, and the rules hold",
                || Ok(crate::ci::workflows::check_files(&paths::workflow_files(), tree)),
            )?,
            Check::DocCommands => listed(
                "doc commands",
                "every cargo xtask line of a runnable block in README.md and docs/ parses",
                || {
                    let files = crate::doc_commands::files(&paths::root());
                    Ok(crate::doc_commands::check(&files, tree).0)
                },
            )?,
            Check::ModuleLayers => listed(
                "module layers",
                "each xtask module imports only from its layer and the ones below, and no module cycle",
                || crate::layers::check_dir(&crate::layers::source_dir()),
            )?,
            Check::TestBuilds => listed(
                "test builds",
                "no test code in a library or binary whose test build is off (`test = false`)",
                || crate::test_builds::check(&paths::root().join("Cargo.toml")),
            )?,
        };
        eprintln!(
            "    {} in {:.1}s",
            if ok { "ok" } else { "FAILED" },
            started.elapsed().as_secs_f64()
        );
        if !ok {
            failed.push(name);
        }
    }
    let skipped_note = match skipped.is_empty() {
        true => String::new(),
        false => format!("; skipped: {}", skipped.join(", ")),
    };
    if (args.require_linters || args.install_linters) && !skipped.is_empty() {
        eprintln!("error: --require-linters, and a workflow linter is missing{skipped_note}");
        return Err(Exit(1).into());
    }
    if failed.is_empty() {
        eprintln!("==> lint passed{skipped_note}");
        Ok(())
    } else {
        eprintln!("error: failing checks: {}{skipped_note}", failed.join(", "));
        Err(Exit(1).into())
    }
}

/// A check that lists its problems: its header (`what` it checks), then each problem on a
/// line of its own. Passes when there is none.
fn listed(
    name: &'static str,
    what: &str,
    find: impl FnOnce() -> anyhow::Result<Vec<String>>,
) -> anyhow::Result<(&'static str, bool)> {
    eprintln!("==> {name}: {what}");
    let problems = find()?;
    for problem in &problems {
        eprintln!("{problem}");
    }
    Ok((name, problems.is_empty()))
}

fn run_command(program: &Path, args: &[String]) -> anyhow::Result<bool> {
    let mut command = Command::new(program);
    command.args(args).current_dir(paths::root()).stdin(std::process::Stdio::null());
    let status = process::run_owned(&mut command, std::time::Duration::from_secs(10))?;
    interrupts::check_interrupted()?;
    Ok(status.success())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Output;

    /// The wrapper's name, as `.ci/run` sets it: its file name.
    fn wrapper_name() -> &'static OsStr {
        Path::new(CLIPPY_WRAPPER).file_name().unwrap()
    }

    /// A directory of this test's own, empty.
    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("xtask-lint-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// A checkout-like root holding a copy of the wrapper, as `.ci/run` finds it.
    fn root_with_wrapper(dir: &Path) -> PathBuf {
        root_named(dir, "checkout")
    }

    fn root_named(dir: &Path, name: &str) -> PathBuf {
        let root = dir.join(name);
        let wrapper = root.join(CLIPPY_WRAPPER);
        std::fs::create_dir_all(wrapper.parent().unwrap()).unwrap();
        std::fs::copy(paths::root().join(CLIPPY_WRAPPER), &wrapper).unwrap();
        root
    }

    /// A one-package workspace at `dir`: a library with `lib_body`, and a binary that
    /// prints whether clippy compiled it.
    fn package(dir: &Path, lib_body: &str) {
        std::fs::create_dir_all(dir.join("src")).unwrap();
        std::fs::write(
            dir.join("Cargo.toml"),
            "[package]\nname = \"linted\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n[workspace]\n",
        )
        .unwrap();
        std::fs::write(dir.join("src/lib.rs"), lib_body).unwrap();
        std::fs::write(
            dir.join("src/main.rs"),
            "fn main() {\n    println!(\"clippy={} {}\", cfg!(clippy), linted::empty(&[]));\n}\n",
        )
        .unwrap();
    }

    /// `cargo build` of the package at `dir` with `wrapper` as the workspace wrapper, and
    /// `<target>/tmp` as the temporary directory (where clippy's output goes, and goes away).
    fn build(dir: &Path, wrapper: &Path, target: &Path) -> Output {
        build_command(dir, wrapper.as_os_str(), target).output().unwrap()
    }

    fn build_command(dir: &Path, wrapper: &OsStr, target: &Path) -> Command {
        std::fs::create_dir_all(target.join("tmp")).unwrap();
        let mut cargo = crate::sys::command::cargo();
        cargo
            .args(["build", "--offline", "--quiet"])
            .current_dir(dir)
            .env("RUSTC_WORKSPACE_WRAPPER", wrapper)
            .env_remove("CARGO_BUILD_RUSTC_WORKSPACE_WRAPPER")
            .env("CARGO_TARGET_DIR", target)
            .env("TMPDIR", target.join("tmp"));
        cargo
    }

    const LINT: &str = "pub fn empty(v: &[u8]) -> bool {\n    v.len() == 0\n}\n";
    const CLEAN: &str = "pub fn empty(v: &[u8]) -> bool {\n    v.is_empty()\n}\n";

    #[test]
    fn the_wrapper_fails_the_build_on_a_lint_and_the_tests_get_rustcs_artifact() {
        let dir = scratch("wrapper-lint");
        let root = root_with_wrapper(&dir);
        let wrapper = root.join(CLIPPY_WRAPPER);
        let crate_dir = root.join("linted");
        let target = dir.join("target");

        package(&crate_dir, LINT);
        let failed = build(&crate_dir, &wrapper, &target);
        let stderr = String::from_utf8_lossy(&failed.stderr);
        assert!(!failed.status.success(), "{stderr}");
        assert!(stderr.contains("len_zero") && stderr.contains("-D warnings"), "{stderr}");
        assert!(!target.join("debug/linted").exists(), "a linted-out build left its binary");

        package(&crate_dir, CLEAN);
        let built = build(&crate_dir, &wrapper, &target);
        assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));
        // rustc compiled what runs (clippy's own output is thrown away): no `cfg(clippy)`.
        let ran = Command::new(target.join("debug/linted")).output().unwrap();
        assert_eq!(String::from_utf8_lossy(&ran.stdout), "clippy=false true\n");
        let left: Vec<_> = std::fs::read_dir(target.join("tmp")).unwrap().collect();
        assert!(left.is_empty(), "clippy's output left behind: {left:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Two clones in different directories, as `.ci/run` builds them (the wrapper by its
    /// name on PATH, the target directory inside the clone), give byte-identical binaries:
    /// cargo hashes the wrapper's name, not a path into the clone, into the crates'
    /// symbols, and the wrapper maps the clone's path out of the debug info. So Docker
    /// finds the app image's layers of an earlier clone's run.
    #[test]
    fn two_clones_built_through_the_wrapper_give_the_same_binary() {
        let dir = scratch("wrapper-clones");
        let mut binaries = Vec::new();
        for name in ["clone-a", "another-clone"] {
            let root = root_named(&dir, name);
            let crate_dir = root.join("linted");
            package(&crate_dir, CLEAN);
            let bin_dir = root.join(CLIPPY_WRAPPER).parent().unwrap().to_owned();
            let path = std::env::join_paths(
                std::iter::once(bin_dir)
                    .chain(std::env::split_paths(&std::env::var_os("PATH").unwrap())),
            )
            .unwrap();
            let target = crate_dir.join("target");
            let built = build_command(&crate_dir, wrapper_name(), &target)
                .env("PATH", path)
                .output()
                .unwrap();
            assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));
            binaries.push(std::fs::read(target.join("debug/linted")).unwrap());
        }
        assert!(binaries[0] == binaries[1], "the two clones' binaries differ");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_wrapper_lints_only_the_checkouts_crates_and_a_compile_error_shows_once() {
        let dir = scratch("wrapper-scope");
        let root = root_with_wrapper(&dir);
        let wrapper = root.join(CLIPPY_WRAPPER);

        // A test's fixture workspace elsewhere builds as plain rustc builds it.
        let elsewhere = dir.join("fixture");
        package(&elsewhere, LINT);
        let built = build(&elsewhere, &wrapper, &dir.join("target-fixture"));
        assert!(built.status.success(), "{}", String::from_utf8_lossy(&built.stderr));

        let crate_dir = root.join("broken");
        package(&crate_dir, "pub fn empty(v: &[u8]) -> bool {\n    v.len()\n}\n");
        let failed = build(&crate_dir, &wrapper, &dir.join("target"));
        let stderr = String::from_utf8_lossy(&failed.stderr);
        assert!(!failed.status.success(), "{stderr}");
        // Clippy, started beside rustc, saw the error too: its output is dropped (cargo
        // shows a repeated message once, but counts it), its directory removed.
        assert_eq!(stderr.matches("error[E0308]").count(), 1, "{stderr}");
        assert!(stderr.contains("due to 1 previous error"), "{stderr}");
        let left: Vec<_> = std::fs::read_dir(dir.join("target/tmp")).unwrap().collect();
        assert!(left.is_empty(), "clippy's output left behind: {left:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A toolchain without clippy: one line that says what to install, exit code 2.
    #[test]
    fn the_wrapper_without_clippy_names_what_to_install() {
        let dir = scratch("wrapper-no-clippy");
        let root = root_with_wrapper(&dir);
        let crate_dir = root.join("linted");
        package(&crate_dir, CLEAN);
        // rustc on its own: a link to the toolchain's rustc in a directory without
        // clippy-driver, and no clippy-driver on PATH.
        let sysroot = Command::new("rustc").args(["--print", "sysroot"]).output().unwrap();
        let real_rustc =
            PathBuf::from(String::from_utf8_lossy(&sysroot.stdout).trim()).join("bin/rustc");
        let lone = dir.join("bin");
        std::fs::create_dir_all(&lone).unwrap();
        std::os::unix::fs::symlink(&real_rustc, lone.join("rustc")).unwrap();
        // PATH: only what the script runs besides the compilers.
        for tool in ["bash", "dirname", "mktemp", "rm"] {
            let found = crate::sys::host::which(tool).unwrap();
            std::os::unix::fs::symlink(found, lone.join(tool)).unwrap();
        }
        let out = Command::new(root.join(CLIPPY_WRAPPER))
            .arg(lone.join("rustc"))
            .args(["--crate-name", "linted", "--edition", "2024", "--crate-type", "lib"])
            .arg(crate_dir.join("src/lib.rs"))
            .arg("--out-dir")
            .arg(dir.join("out"))
            .env("CARGO_MANIFEST_DIR", &crate_dir)
            .env("PATH", &lone)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.contains("rustup component add clippy"), "{stderr}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn clippy_runs_in_the_build_only_under_this_checkouts_wrapper() {
        let dir = scratch("wrapper-detect");
        let root = root_with_wrapper(&dir);
        let other = dir.join("other-wrapper");
        std::fs::write(&other, "").unwrap();
        let ours = root.join(CLIPPY_WRAPPER);
        let through_dot = root.join(".ci/bin/../bin/rustc-and-clippy");
        let no_path = None;

        assert!(clippy_in_build(Some(ours.as_os_str()), no_path, &root));
        assert!(clippy_in_build(Some(through_dot.as_os_str()), no_path, &root));
        assert!(!clippy_in_build(Some(other.as_os_str()), no_path, &root));
        assert!(!clippy_in_build(Some("".as_ref()), no_path, &root));
        assert!(!clippy_in_build(None, no_path, &root));
        // Another checkout's wrapper lints that checkout's crates, not these.
        assert!(!clippy_in_build(Some(ours.as_os_str()), no_path, &dir));
        // By name, as `.ci/run` sets it: the first on PATH, as cargo finds it.
        let name = Some(wrapper_name());
        let ours_first = std::env::join_paths([ours.parent().unwrap(), &dir]).unwrap();
        let other_first = std::env::join_paths([&dir, ours.parent().unwrap()]).unwrap();
        std::fs::write(dir.join(wrapper_name()), "").unwrap();
        assert!(clippy_in_build(name, Some(&ours_first), &root));
        assert!(!clippy_in_build(name, Some(&other_first), &root));
        assert!(!clippy_in_build(name, no_path, &root));
        std::fs::remove_dir_all(&dir).unwrap();

        let lines = |in_build| -> Vec<String> {
            clippy_commands(in_build).iter().map(|(_, args)| args.join(" ")).collect()
        };
        assert_eq!(
            lines(false),
            [
                "clippy --workspace --all-targets --features tasker-core/test-services --quiet -- -D warnings"
            ]
        );
        // The unit tests' selection, then the pipeline's end-to-end tests. The first is
        // what nextest builds for `cargo xtask test`: no target flags, no features.
        let unit = &crate::test::plan(&[], false, true)[0].cargo_args;
        assert!(unit.contains(&"--workspace".to_string()), "{unit:?}");
        for flag in ["--all-targets", "--examples", "--tests", "--features", "--lib", "--bins"] {
            assert!(!unit.contains(&flag.to_string()), "{flag} in {unit:?}");
        }
        assert_eq!(
            lines(true),
            [
                "test --no-run --workspace --quiet",
                "test --no-run --workspace --features tasker-core/test-services --test e2e_* --quiet"
            ]
        );
    }
}
