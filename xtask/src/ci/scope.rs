//! `cargo xtask ci-scope`: what a change must run, from the files it touches. Pure
//! classification ([`classify`]) of the paths `git diff --name-only` reports against the
//! merge base; the task prints the decision with its reasons and writes it to
//! `$GITHUB_OUTPUT`.

use std::process::Command;

use anyhow::Context as _;

use crate::github;
use crate::sys::error::UserError;
use crate::sys::paths;

#[derive(clap::Args)]
#[command(after_help = "\
Rules, per changed file:
  docs/**, *.md, LICENSE*                          documentation only: no integration tests
  .github/**, docker/**, xtask/**, .ci/**,         everything runs (both workers)
    .cargo/**, .config/nextest.toml, migrations,
    config/services.toml, Cargo.toml, Cargo.lock,
    rust-toolchain.toml
  workers/rust/**, tests/e2e_rust_worker.rs,       integration tests, Rust worker only
    examples/**
  anything else: the Ruby worker and its tests     integration tests with the Ruby worker
    (workers/ruby/**, tests/e2e_ruby_worker.rs),
    what it shares (crates/**, src/**, config/**)
    and any file no rule names
`run-docker` is suggested for what the Docker mode exists for: Dockerfiles and the
compose file, deployment configuration (config/), migrations, the FFI library
(workers/ruby/ext/); on GitHub Actions as a notice on the run and in the step summary.

Writes integration=true|false, ruby=true|false, without=ruby-worker or empty (for
`ci-native --without`), suggest_docker=true|false to $GITHUB_OUTPUT when set.

Examples:
  cargo xtask ci-scope                         against the merge base with origin/main
  cargo xtask ci-scope --base origin/release   against another branch
  cargo xtask ci-scope --files docs/ci.md xtask/src/main.rs")]
pub struct Args {
    /// The branch or commit to diff against (its merge base with HEAD)
    #[arg(long, value_name = "REF", default_value = "origin/main")]
    base: String,
    /// Classify these paths instead of asking git
    #[arg(long, value_name = "PATH", num_args = 1..)]
    files: Vec<String>,
}

/// What a change must run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub integration: bool,
    pub ruby: bool,
    pub suggest_docker: bool,
    /// Why, one line per rule that fired (with an example path).
    pub reasons: Vec<String>,
}

impl Scope {
    /// The service `ci-native` / `ci-docker --without` can leave out: the change cannot
    /// affect it (empty: none).
    pub fn without(&self) -> &'static str {
        if self.ruby { "" } else { "ruby-worker" }
    }
}

fn is_docs(path: &str) -> bool {
    path.starts_with("docs/")
        || path.ends_with(".md")
        || path.rsplit('/').next().is_some_and(|name| name.starts_with("LICENSE"))
}

fn runs_everything(path: &str) -> bool {
    [".github/", "docker/", "xtask/", ".ci/", ".cargo/", "crates/tasker-shared/migrations/"]
        .iter()
        .any(|prefix| path.starts_with(prefix))
        || [
            "config/services.toml",
            ".config/nextest.toml",
            "Cargo.toml",
            "Cargo.lock",
            "rust-toolchain.toml",
            "rust-toolchain",
        ]
        .contains(&path)
}

/// What the Ruby worker and its tests cannot reach: the Rust worker, its end-to-end
/// tests, the benchmarks. Every other file (the Ruby worker, its tests, the crates,
/// `src/` and `config/` they share, and any file no rule names) includes it: leaving
/// it out is safe only where that is known.
fn rust_worker_only(path: &str) -> bool {
    path.starts_with("workers/rust/")
        || path.starts_with("examples/")
        || path == "tests/e2e_rust_worker.rs"
}

const DEPLOYMENT_REASON: &str = "deployment-relevant change: consider the `run-docker` label";

/// Changes the Docker mode exists for (the seed's list).
fn deployment(path: &str) -> bool {
    path.starts_with("docker/")
        || path.starts_with("config/")
        || path.starts_with("crates/tasker-shared/migrations/")
        || path.starts_with("workers/ruby/ext/")
        || path.rsplit('/').next().is_some_and(|name| name.contains("Dockerfile"))
}

pub fn classify(paths: &[String]) -> Scope {
    let mut scope =
        Scope { integration: false, ruby: false, suggest_docker: false, reasons: Vec::new() };
    let note = |reasons: &mut Vec<String>, rule: &str, path: &str| {
        if !reasons.iter().any(|r| r.starts_with(rule)) {
            reasons.push(format!("{rule} ({path})"));
        }
    };
    for path in paths.iter().map(|p| p.trim()).filter(|p| !p.is_empty()) {
        if is_docs(path) {
            continue;
        }
        if runs_everything(path) {
            scope.integration = true;
            scope.ruby = true;
            note(&mut scope.reasons, "CI, build or service setup changed: everything runs", path);
        } else if rust_worker_only(path) {
            scope.integration = true;
            note(&mut scope.reasons, "Rust-worker code changed: integration tests run", path);
        } else {
            scope.integration = true;
            scope.ruby = true;
            note(
                &mut scope.reasons,
                "the Ruby worker, its tests or what it shares changed: it runs too",
                path,
            );
        }
        if deployment(path) {
            scope.suggest_docker = true;
            note(&mut scope.reasons, DEPLOYMENT_REASON, path);
        }
    }
    if !scope.integration {
        scope.reasons.push("documentation only: integration tests are skipped".into());
    }
    scope
}

/// The line that suggests the `run-docker` label, with the change that calls for it.
pub fn docker_suggestion(scope: &Scope) -> Option<String> {
    if !scope.suggest_docker {
        return None;
    }
    let example = scope
        .reasons
        .iter()
        .find(|r| r.starts_with(DEPLOYMENT_REASON))
        .and_then(|r| r.rsplit_once(" (").map(|(_, p)| p.trim_end_matches(')')))
        .unwrap_or("deployment files");
    Some(format!(
        "This change touches what the Docker mode validates ({example}): consider the `{}` label.",
        crate::ci::mode::RUN_DOCKER_LABEL
    ))
}

/// The paths changed between the merge base of `base` and HEAD (committed changes) in
/// the repository at `root`.
fn changed_files(root: &std::path::Path, base: &str) -> anyhow::Result<Vec<String>> {
    let merge_base = Command::new("git")
        .current_dir(root)
        .args(["merge-base", base, "HEAD"])
        .output()
        .context("running git merge-base")?;
    if !merge_base.status.success() {
        crate::user_error!(
            "no merge base with `{base}` ({}): fetch it (`git fetch origin`, or checkout with fetch-depth: 0) or pass --base",
            String::from_utf8_lossy(&merge_base.stderr).trim()
        );
    }
    let merge_base = String::from_utf8_lossy(&merge_base.stdout).trim().to_string();
    let diff = Command::new("git")
        .current_dir(root)
        .args(["diff", "--name-only", &merge_base, "HEAD"])
        .output()
        .context("running git diff")?;
    if !diff.status.success() {
        return Err(UserError(format!(
            "git diff against {merge_base} failed: {}",
            String::from_utf8_lossy(&diff.stderr).trim()
        ))
        .into());
    }
    Ok(String::from_utf8_lossy(&diff.stdout).lines().map(str::to_string).collect())
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let files = match args.files.is_empty() {
        true => changed_files(&paths::root(), &args.base)?,
        false => args.files,
    };
    let scope = classify(&files);
    println!(
        "scope of {} changed file(s): integration={} ruby={} suggest_docker={}",
        files.len(),
        scope.integration,
        scope.ruby,
        scope.suggest_docker
    );
    for reason in &scope.reasons {
        println!("  - {reason}");
    }
    if let Some(suggestion) = docker_suggestion(&scope) {
        // Shown on the run's page and in the job summary, where a reviewer sees it.
        github::notice(&suggestion);
        github::step_summary(&format!("{suggestion}\n"))?;
    }
    github::set_outputs(&[
        ("integration", scope.integration.to_string()),
        ("ruby", scope.ruby.to_string()),
        ("without", scope.without().to_string()),
        ("suggest_docker", scope.suggest_docker.to_string()),
    ])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(paths: &[&str]) -> Scope {
        classify(&paths.iter().map(|p| p.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn documentation_only_skips_integration() {
        let scope = of(&["docs/ci.md", "README.md", "workers/ruby/README.md"]);
        assert!(!scope.integration && !scope.ruby && !scope.suggest_docker);
        assert_eq!(scope.reasons, vec!["documentation only: integration tests are skipped"]);
        assert!(!of(&[]).integration);
    }

    #[test]
    fn rust_only_changes_leave_the_ruby_worker_out() {
        for path in
            ["workers/rust/src/handlers.rs", "tests/e2e_rust_worker.rs", "examples/e2e_bench.rs"]
        {
            let scope = of(&[path, "docs/ci.md"]);
            assert!(scope.integration && !scope.ruby && !scope.suggest_docker, "{path}");
            assert_eq!(scope.without(), "ruby-worker");
        }
    }

    #[test]
    fn the_ruby_worker_its_tests_and_shared_code_include_it() {
        for path in [
            "workers/ruby/lib/tasker_ruby/step.rb",
            "crates/tasker-worker/src/lib.rs",
            "tests/e2e_ruby_worker.rs",
            "src/lib.rs",
            ".cargo/config.toml",
            "rust-toolchain.toml",
            "rustfmt.toml",
            "a-file-no-rule-names.txt",
        ] {
            let scope = of(&[path]);
            assert!(scope.integration && scope.ruby, "{path}");
            assert_eq!(scope.without(), "");
        }
    }

    /// Derived from the repository, not from a list kept beside the rules: every file of
    /// the Ruby worker's directory, of the package it loads and of each workspace crate
    /// that package depends on, the source of its end-to-end test binary and of that
    /// binary's package library, and the build's shared configuration must include it.
    #[test]
    fn every_file_the_ruby_worker_or_its_tests_are_built_from_includes_it() {
        let root = paths::root();
        let manifest = crate::services::manifest::load(&root.join("config/services.toml")).unwrap();
        let ruby = manifest.services.iter().find(|s| s.name == "ruby-worker").expect("ruby-worker");
        let meta = xtask_deps::meta::run(&root.join("Cargo.toml"), true, true).unwrap();
        let members = meta.workspace_packages();
        let package = |name: &str| members.iter().find(|p| p.name.as_str() == name).copied();
        let dir_of = |p: &xtask_deps::meta::Package| {
            p.manifest_path.parent().unwrap().as_std_path().to_path_buf()
        };

        let mut dirs = vec![root.join(ruby.step.workdir.as_deref().expect("a workdir"))];
        // The package the worker loads and the workspace crates it depends on, transitively.
        let crate::services::manifest::Launch::Command { package: Some(lib), .. } =
            &ruby.step.launch
        else {
            panic!("the Ruby worker names the package it loads");
        };
        let mut queue = vec![lib.clone()];
        while let Some(name) = queue.pop() {
            let p = package(&name).unwrap_or_else(|| panic!("{name} is a workspace package"));
            dirs.push(dir_of(p));
            queue
                .extend(p.dependencies.iter().filter(|d| d.path.is_some()).map(|d| d.name.clone()));
        }
        // Its end-to-end tests: the test binary's source and its package's library.
        let binary = ruby.tests.as_deref().and_then(|t| t.strip_prefix("binary(")).unwrap();
        let binary = binary.trim_end_matches(')');
        let tests = members
            .iter()
            .find(|p| p.targets.iter().any(|t| t.name == binary && t.is_test()))
            .expect("the test binary of the Ruby worker's tests");
        let mut files: Vec<std::path::PathBuf> = tests
            .targets
            .iter()
            .filter(|t| t.name == binary || t.is_lib())
            .map(|t| t.src_path.clone().into_std_path_buf())
            .collect();
        for dir in &dirs {
            files.extend(crate::sys::fs::files_below(dir, "rs"));
            files.extend(crate::sys::fs::files_below(dir, "rb"));
            files.extend(crate::sys::fs::files_below(dir, "toml"));
        }
        // What every build shares.
        for shared in [".cargo/config.toml", "rust-toolchain.toml", "Cargo.toml", "Cargo.lock"] {
            assert!(root.join(shared).is_file(), "{shared} is gone: update this test");
            files.push(root.join(shared));
        }
        let relative: Vec<String> = files
            .iter()
            .map(|f| f.strip_prefix(&root).unwrap().display().to_string())
            .filter(|f| !f.starts_with("target/"))
            .collect();
        assert!(relative.len() > 20, "too few files found: {relative:?}");
        let left_out: Vec<&String> = relative.iter().filter(|f| !of(&[f]).ruby).collect();
        assert!(left_out.is_empty(), "ci-scope leaves the Ruby worker out for: {left_out:?}");
    }

    #[test]
    fn setup_changes_run_everything_and_deployment_ones_suggest_docker() {
        for path in [
            ".github/workflows/ci.yml",
            "xtask/src/main.rs",
            "Cargo.lock",
            ".config/nextest.toml",
            ".cargo/config.toml",
            "rust-toolchain.toml",
        ] {
            let scope = of(&[path]);
            assert!(scope.integration && scope.ruby && !scope.suggest_docker, "{path}");
        }
        for path in [
            "docker/app.Dockerfile",
            "config/services.toml",
            "config/tasker/base/common.toml",
            "crates/tasker-shared/migrations/20260101000000_tasks_and_steps.sql",
            "workers/ruby/ext/src/bridge.rs",
        ] {
            let scope = of(&[path]);
            assert!(scope.integration && scope.ruby && scope.suggest_docker, "{path}");
            assert!(
                scope.reasons.iter().any(|r| r.contains("run-docker")),
                "{path}: {:?}",
                scope.reasons
            );
            let suggestion = docker_suggestion(&scope).unwrap();
            assert_eq!(
                suggestion,
                format!(
                    "This change touches what the Docker mode validates ({path}): consider the `run-docker` label."
                )
            );
        }
        assert_eq!(docker_suggestion(&of(&["xtask/src/main.rs"])), None);
    }

    /// A repository with a `main` branch and a change on top of it.
    fn repository() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("xtask-scope-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("docs")).unwrap();
        let git = |args: &[&str]| {
            let out = Command::new("git")
                .current_dir(&dir)
                .args(["-c", "user.name=t", "-c", "user.email=t@example.invalid"])
                .args(args)
                .output()
                .unwrap();
            assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        git(&["init", "--quiet", "--initial-branch=main"]);
        std::fs::write(dir.join("README.md"), "a").unwrap();
        git(&["add", "."]);
        git(&["commit", "--quiet", "-m", "one"]);
        git(&["checkout", "--quiet", "-b", "change"]);
        std::fs::write(dir.join("docs/ci.md"), "b").unwrap();
        git(&["add", "."]);
        git(&["commit", "--quiet", "-m", "two"]);
        dir
    }

    #[test]
    fn the_diff_against_the_merge_base_lists_the_changed_files() {
        let dir = repository();
        assert_eq!(changed_files(&dir, "main").unwrap(), vec!["docs/ci.md"]);
        let err = changed_files(&dir, "no-such-branch").unwrap_err();
        assert!(err.downcast_ref::<UserError>().is_some(), "{err:#}");
        assert!(err.to_string().starts_with("no merge base with `no-such-branch`"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn each_rule_is_reported_once_with_an_example() {
        let scope = of(&["xtask/src/a.rs", "xtask/src/b.rs", "workers/rust/src/main.rs"]);
        assert_eq!(
            scope.reasons,
            vec![
                "CI, build or service setup changed: everything runs (xtask/src/a.rs)",
                "Rust-worker code changed: integration tests run (workers/rust/src/main.rs)",
            ]
        );
    }
}
