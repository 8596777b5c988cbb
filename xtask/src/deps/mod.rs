//! `cargo xtask deps`: finds dependency declarations that nothing uses, and removes
//! them safely.
//!
//! - `lexer`/`scan`: what each source file references (pure).
//! - `load`: `cargo metadata`, manifests and module walking (effects) -> the model.
//! - `analyze`: the classification (pure); `report`: table, JSON, Markdown.
//! - `edit`: `toml_edit` removals (pure); `fix`/`verify`: apply, check, keep or restore.
//! - `bench`: timing and accuracy against cargo-machete and cargo-shear.

mod analyze;
mod bench;
mod compiler;
mod edit;
mod fix;
mod lexer;
mod load;
pub(crate) mod meta;
mod report;
mod savings;
mod scan;
#[cfg(test)]
mod tests;
mod verify;

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand, ValueEnum};

use crate::project::{self, Exit};

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
    /// Run cargo metadata even if the cached results (target/xtask/deps-*) are current.
    #[arg(long)]
    no_cache: bool,
}

#[derive(Subcommand, Debug)]
enum DepsCommand {
    /// Time and compare `cargo xtask deps`, cargo-machete and cargo-shear on this
    /// workspace and on a generated large one.
    Bench(bench::BenchArgs),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Format {
    Text,
    Json,
}

pub fn run(args: DepsArgs) -> anyhow::Result<()> {
    if let Some(DepsCommand::Bench(b)) = args.command {
        return bench::run(b);
    }
    let manifest = match &args.manifest_path {
        Some(p) => resolve_manifest(p)?,
        None => project::root().join("Cargo.toml"),
    };
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
        compiler::confirm(&ws, analysis, &cargo)?
    } else {
        analysis
    };
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
    if args.report {
        let path = ws.root.join("docs/analysis/unused-dependencies-analysis.md");
        project::write_atomic(&path, report::markdown(&analysis))?;
        eprintln!("wrote {}", path.strip_prefix(&ws.root).unwrap_or(&path).display());
    }
    if analysis.failing() > 0 {
        return Err(Exit(1).into());
    }
    Ok(())
}

fn render(analysis: &analyze::Analysis, format: Format) -> String {
    match format {
        Format::Text => report::text(analysis),
        Format::Json => report::json(analysis),
    }
}

fn resolve_manifest(p: &Path) -> anyhow::Result<PathBuf> {
    let p = if p.is_dir() { p.join("Cargo.toml") } else { p.to_path_buf() };
    if !p.is_file() {
        crate::user_error!(
            "--manifest-path {}: no such manifest; give a Cargo.toml or its directory",
            p.display()
        );
    }
    Ok(std::fs::canonicalize(&p).unwrap_or(p))
}

pub(crate) fn analyze_workspace(ws: &load::Workspace) -> analyze::Analysis {
    analyze::analyze(&ws.members, &ws.workspace_entries, &ws.workspace_ignore)
}
