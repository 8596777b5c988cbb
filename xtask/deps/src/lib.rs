//! `cargo xtask deps`: finds dependency declarations that nothing uses, and removes
//! them safely. A crate of its own: xtask links it and hands `cargo xtask deps` to
//! [`DepsArgs`] and [`run`]; its tests (`tests/`) use the same public API. What it
//! shares with xtask (the error kinds, atomic writes, the interrupt flag, the diff, the
//! median) is the `xtask-sys` crate's.
//!
//! - `lexer`/`scan`: what each source file references (pure).
//! - `meta`: `cargo metadata` in the `cargo_metadata` crate's model, cached; `load`:
//!   manifests and module walking (effects) -> the model.
//! - `inputs`: every read of the analysis, logged; `replay`: a plain run whose inputs
//!   are all unchanged prints the last output again instead of analysing.
//! - `analyze`: the classification (pure); `report`: table, JSON, Markdown.
//! - `graph`: the resolve graph and its cache; `savings`: what a removal saves (pure
//!   walks over the graph, and cargo's timings).
//! - `edit`: `toml_edit` removals (pure); `fix`/`verify`: apply, check, keep or restore.
//! - `compiler`: the compiler tier; `bench`: timing and accuracy against cargo-machete and
//!   cargo-shear.
//! - `cargo_timings`: cargo's `--timings` report (xtask's `build-timings` reads it too).

pub mod analyze;
pub mod bench;
pub mod cargo_timings;
pub mod compiler;
mod edit;
pub mod fix;
mod graph;
pub mod inputs;
mod lexer;
pub mod load;
pub mod meta;
pub mod replay;
pub mod report;
pub mod savings;
mod scan;
pub mod verify;

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand, ValueEnum};
use xtask_sys::error::Exit;
use xtask_sys::user_error;

#[derive(Args, Debug)]
#[command(
    about = "Find unused dependencies; remove them safely",
    long_about = "Classifies every dependency declaration of every member (normal, dev, build and \
target-specific tables) and every [workspace.dependencies] entry as used, verified unused, \
misplaced (only used by tests/examples) or needing investigation. Changes nothing unless \
--verified-only or --with-verification is given. Exit status: 0 when nothing is verified \
unused or misplaced, 1 otherwise, 2 on bad input."
)]
pub struct DepsArgs {
    #[command(subcommand)]
    command: Option<DepsCommand>,
    /// Output format of the analysis.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Also write docs/analysis/unused-dependencies-analysis.md.
    #[arg(long)]
    report: bool,
    /// The workspace to analyze (default: this repository).
    #[arg(long, value_name = "PATH")]
    manifest_path: Option<PathBuf>,
    /// Remove every verified-unused declaration, then confirm with cargo metadata and
    /// cargo check; restore everything if that fails.
    #[arg(long, conflicts_with = "with_verification")]
    verified_only: bool,
    /// With --verified-only: print the diff instead of writing.
    #[arg(long, requires = "verified_only")]
    dry_run: bool,
    /// With --verified-only: move misplaced dependencies to [dev-dependencies].
    #[arg(long, requires = "verified_only")]
    fix_misplaced: bool,
    /// Try each candidate (verified unused, misplaced, needs investigation) on its own:
    /// change, cargo check, keep or revert.
    #[arg(long)]
    with_verification: bool,
    /// With --with-verification: also run the test suite for each candidate.
    #[arg(long, requires = "with_verification")]
    test: bool,
    /// With --with-verification: edit even if tracked files have uncommitted changes.
    #[arg(long)]
    allow_dirty: bool,
    /// Pass --offline to every cargo invocation.
    #[arg(long)]
    offline: bool,
    /// Confirm the findings with the compiler: rustc's unused_crate_dependencies lint,
    /// turned on for the members only (manifests restored afterwards), over one cargo
    /// check of every target. Slower than the static scan; --with-verification always
    /// uses it.
    #[arg(long)]
    compiler: bool,
    /// With --compiler or --with-verification: check with the default features instead
    /// of --all-features (for workspaces whose features exclude each other).
    #[arg(long)]
    default_features: bool,
    /// Analyse and run cargo metadata even if the cached results (target/xtask/deps-*)
    /// are current.
    #[arg(long)]
    no_cache: bool,
}

#[derive(Subcommand, Debug)]
pub enum DepsCommand {
    /// Time and compare `cargo xtask deps`, cargo-machete and cargo-shear on this
    /// workspace and on a generated large one.
    Bench(bench::BenchArgs),
}

/// How `cargo xtask deps` prints the analysis (`--format`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

/// `cargo xtask deps`: `workspace` is the root of the workspace analysed without
/// `--manifest-path` (xtask's own). A mistake of the user's is an
/// `xtask_sys::error::UserError` (exit code 2); a run that found something, or failed a
/// check and said so, ends with an `Exit`.
pub fn run(args: DepsArgs, workspace: &Path) -> anyhow::Result<()> {
    if let Some(DepsCommand::Bench(b)) = args.command {
        return bench::run(b, workspace);
    }
    let manifest = match &args.manifest_path {
        Some(p) => resolve_manifest(p)?,
        None => workspace.join("Cargo.toml"),
    };
    // A plain analysis prints, and changes, nothing else: its output can be replayed.
    if !(args.compiler || args.with_verification || args.verified_only || args.report) {
        let (plain, _) = analyze_plain(&manifest, args.offline, !args.no_cache, args.format)?;
        print!("{}", plain.printed);
        return if plain.failing { Err(Exit(1).into()) } else { Ok(()) };
    }
    let ws = load::load(&manifest, args.offline, !args.no_cache)?;
    let analysis = analyze_workspace(&ws);
    let cargo = verify::Cargo {
        manifest: ws.root_manifest.clone(),
        target_dir: None,
        offline: args.offline,
    };
    if args.with_verification && !args.allow_dirty {
        verify::ensure_clean(&ws.root)?;
    }
    let mut analysis = if args.compiler || args.with_verification {
        compiler::confirm_with(&ws, analysis, &cargo, !args.default_features)?
    } else {
        analysis
    };
    // The committed report is the same on every machine: made before the savings, which
    // depend on this machine's cargo timings.
    let markdown = args.report.then(|| report::markdown(&analysis));
    if !args.verified_only && !args.with_verification {
        savings::measure(&ws, &mut analysis, args.offline)?;
    }
    if args.verified_only {
        return fix::verified_only(&ws, &analysis, args.fix_misplaced, args.dry_run, &cargo);
    }
    if args.with_verification {
        fix::with_verification(&ws, &analysis, args.test, &cargo)?;
        return Ok(());
    }
    print!("{}", render(&analysis, args.format));
    if let Some(markdown) = markdown {
        let path = ws.root.join("docs/analysis/unused-dependencies-analysis.md");
        xtask_sys::fs::write_atomic(&path, markdown)?;
        eprintln!("wrote {}", path.strip_prefix(&ws.root).unwrap_or(&path).display());
    }
    if analysis.failing() > 0 {
        return Err(Exit(1).into());
    }
    Ok(())
}

/// What a plain `cargo xtask deps` prints, and whether it fails the check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plain {
    pub printed: String,
    pub failing: bool,
}

/// Whether [`analyze_plain`] analysed or replayed an earlier run's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    Analysed,
    Replayed,
}

/// The plain analysis (no compiler tier, no edits) with its savings, as `format`:
/// replayed when every input is as it was for a run that kept its output
/// ([`replay`]), else analysed, and kept for the next run when it can be.
/// `use_cache: false` (`--no-cache`) always analyses.
pub fn analyze_plain(
    manifest: &Path,
    offline: bool,
    use_cache: bool,
    format: Format,
) -> anyhow::Result<(Plain, Served)> {
    let in_format = |output: replay::Output| match format {
        Format::Json => output.json,
        Format::Text => output.text,
    };
    let replay = replay::Replay::new(manifest, offline);
    if let Some(stored) = replay.as_ref().filter(|_| use_cache).and_then(|r| r.lookup()) {
        let failing = stored.failing;
        return Ok((Plain { printed: in_format(stored), failing }, Served::Replayed));
    }
    let recording = inputs::Recording::start();
    let ws = load::load(manifest, offline, use_cache)?;
    let mut analysis = analyze_workspace(&ws);
    savings::measure(&ws, &mut analysis, offline)?;
    let failing = analysis.failing() > 0;
    if let Some((replay, inputs)) = replay.zip(recording.finish()) {
        let output = replay::Output {
            failing,
            text: render(&analysis, Format::Text),
            json: render(&analysis, Format::Json),
        };
        replay.store(&inputs, &output);
        return Ok((Plain { printed: in_format(output), failing }, Served::Analysed));
    }
    Ok((Plain { printed: render(&analysis, format), failing }, Served::Analysed))
}

/// The analysis as `cargo xtask deps` prints it.
pub fn render(analysis: &analyze::Analysis, format: Format) -> String {
    match format {
        Format::Text => report::text(analysis),
        Format::Json => report::json(analysis),
    }
}

/// The manifest `--manifest-path` names (a `Cargo.toml` or its directory).
pub fn resolve_manifest(p: &Path) -> anyhow::Result<PathBuf> {
    let p = if p.is_dir() { p.join("Cargo.toml") } else { p.to_path_buf() };
    if !p.is_file() {
        user_error!(
            "--manifest-path {}: no such manifest; give a Cargo.toml or its directory",
            p.display()
        );
    }
    Ok(std::fs::canonicalize(&p).unwrap_or(p))
}

/// A fresh directory of the test's own below the system's temporary directory
/// (`xtask-deps-<name>-<pid>`).
#[cfg(test)]
pub(crate) fn test_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("xtask-deps-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The static analysis of a loaded workspace.
pub fn analyze_workspace(ws: &load::Workspace) -> analyze::Analysis {
    analyze::analyze(&ws.members, &ws.workspace_entries, &ws.workspace_ignore)
}
