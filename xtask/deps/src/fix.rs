//! `--verified-only` and `--with-verification`: turn findings into manifest changes,
//! apply them inside a [`Transaction`], and keep them only when cargo agrees.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use super::analyze::{Analysis, Class, Table, Verdict};
use super::edit;
use super::load::{Workspace, inherited_keys};
use super::verify::{Cargo, Transaction};
use xtask_sys::diff;
use xtask_sys::error::Exit;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Remove,
    MoveToDev,
    RemoveWorkspaceEntry,
}

#[derive(Debug, Clone)]
pub struct Change {
    /// Member name, or `[workspace.dependencies]`.
    pub member: String,
    pub manifest: PathBuf,
    pub key: String,
    pub table: Table,
    pub target: Option<String>,
    pub action: Action,
    pub class: Class,
    /// The compiler tier saw it used (by this target), when it ran.
    pub compiler_used_by: Option<String>,
}

impl Change {
    pub fn describe(&self) -> String {
        let table = match (&self.action, &self.target) {
            (Action::RemoveWorkspaceEntry, _) => "workspace.dependencies".to_string(),
            (_, Some(t)) => format!("target.'{t}'.{}", self.table.toml_name()),
            (_, None) => self.table.toml_name().to_string(),
        };
        let verb =
            if self.action == Action::MoveToDev { "move to dev-dependencies" } else { "remove" };
        format!("{}: {verb} `{}` ({table}, {})", self.member, self.key, self.class.label())
    }
}

/// The changes for the given classes; misplaced ones become moves when `fix_misplaced`.
pub fn changes(
    ws: &Workspace,
    analysis: &Analysis,
    classes: &[Class],
    fix_misplaced: bool,
) -> Vec<Change> {
    let mut out = Vec::new();
    for m in &analysis.members {
        let manifest = ws.manifests[&m.name].clone();
        for f in &m.findings {
            if f.ignored_by.is_some() {
                continue;
            }
            let action = match f.class {
                Class::Misplaced if fix_misplaced => Action::MoveToDev,
                ref c if classes.contains(c) && *c != Class::Misplaced => Action::Remove,
                _ => continue,
            };
            out.push(Change {
                member: m.name.clone(),
                manifest: manifest.clone(),
                key: f.key.clone(),
                table: f.table,
                target: f.target.clone(),
                action,
                class: f.class.clone(),
                compiler_used_by: match &f.compiler {
                    Some(Verdict::Used { by }) => Some(by.clone()),
                    _ => None,
                },
            });
        }
    }
    for w in &analysis.workspace {
        if classes.contains(&w.class) && w.ignored_by.is_none() {
            out.push(Change {
                member: "[workspace.dependencies]".into(),
                manifest: ws.root_manifest.clone(),
                key: w.key.clone(),
                table: Table::Normal,
                target: None,
                action: Action::RemoveWorkspaceEntry,
                class: w.class.clone(),
                compiler_used_by: None,
            });
        }
    }
    out
}

/// Old and new text of each changed file.
pub type NewTexts = BTreeMap<PathBuf, (String, String)>;

/// The new text of every manifest the changes touch (only those that differ), and notes
/// about what could not be done or was done on the side.
pub fn apply(ws: &Workspace, changes: &[Change]) -> anyhow::Result<(NewTexts, Vec<String>)> {
    let mut docs: BTreeMap<PathBuf, (String, toml_edit::DocumentMut)> = BTreeMap::new();
    let mut paths: Vec<PathBuf> = ws.manifests.values().cloned().collect();
    paths.push(ws.root_manifest.clone());
    paths.sort();
    paths.dedup();
    for path in paths {
        {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            let doc = text.parse().with_context(|| format!("parsing {}", path.display()))?;
            docs.insert(path, (text, doc));
        }
    }
    let mut notes = Vec::new();
    let mut orphan_candidates = Vec::new();
    for c in changes {
        let (_, doc) = docs.get_mut(&c.manifest).context("manifest of a change was not loaded")?;
        match c.action {
            Action::Remove => {
                let was_inherited = inherited_keys(doc.as_table()).contains(&(
                    c.table,
                    c.target.clone(),
                    c.key.clone(),
                ));
                if edit::remove_dep(doc, &c.key, c.table, c.target.as_deref()) {
                    let gone = edit::cleanup_features(doc, &c.key);
                    if !gone.is_empty() {
                        notes.push(format!(
                            "{}: removed feature(s) left empty: {}",
                            c.member,
                            gone.join(", ")
                        ));
                    }
                    if was_inherited {
                        orphan_candidates.push(c.key.clone());
                    }
                }
            }
            Action::MoveToDev => {
                if let Err(why) = edit::move_to_dev(doc, &c.key, c.target.as_deref()) {
                    notes.push(format!(
                        "{}: not moving `{}` to dev-dependencies: {why}",
                        c.member, c.key
                    ));
                }
            }
            Action::RemoveWorkspaceEntry => {
                edit::remove_workspace_dep(doc, &c.key);
            }
        }
    }
    // A `[workspace.dependencies]` entry that no member inherits any more goes too.
    for key in orphan_candidates {
        let still = docs
            .values()
            .any(|(_, d)| inherited_keys(d.as_table()).iter().any(|(_, _, k)| *k == key));
        if !still {
            let (_, root) =
                docs.get_mut(&ws.root_manifest).context("root manifest was not loaded")?;
            if edit::remove_workspace_dep(root, &key) {
                notes.push(format!(
                    "[workspace.dependencies]: removed `{key}`, no member inherits it any more"
                ));
            }
        }
    }
    let changed = docs
        .into_iter()
        .filter_map(|(path, (old, doc))| {
            let new = doc.to_string();
            (new != old).then_some((path, (old, new)))
        })
        .collect();
    Ok((changed, notes))
}

/// The members the changes edit (not the `[workspace.dependencies]` table), each once.
fn edited_packages(changes: &[Change]) -> Vec<&str> {
    let mut out: Vec<&str> = changes
        .iter()
        .filter(|c| c.action != Action::RemoveWorkspaceEntry)
        .map(|c| c.member.as_str())
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Confirms a change: the manifests load, the workspace builds, and so does each edited
/// package on its own. Err names the step that failed.
fn confirm(
    cargo: &Cargo,
    packages: &[&str],
    all_features: bool,
) -> anyhow::Result<Result<(), String>> {
    if let Err(e) = cargo.metadata()? {
        return Ok(Err(format!("cargo metadata failed: {e}")));
    }
    if let Err(e) = cargo.check(all_features)? {
        return Ok(Err(format!("cargo check --workspace --all-targets failed: {e}")));
    }
    for package in packages {
        if let Err(e) = cargo.check_package(package)? {
            return Ok(Err(format!(
                "package `{package}` no longer builds on its own (cargo check -p {package} --all-targets; other members' features hid it from the workspace check): {e}"
            )));
        }
    }
    Ok(Ok(()))
}

fn lockfile(ws: &Workspace) -> PathBuf {
    ws.root.join("Cargo.lock")
}

fn rel(ws: &Workspace, p: &Path) -> String {
    p.strip_prefix(&ws.root).unwrap_or(p).display().to_string()
}

/// `--verified-only`: remove every verified-unused declaration (and move misplaced ones
/// with `fix_misplaced`), then confirm with `cargo metadata` and `cargo check`; restore
/// everything if either fails.
pub fn verified_only(
    ws: &Workspace,
    analysis: &Analysis,
    fix_misplaced: bool,
    dry_run: bool,
    cargo: &Cargo,
) -> anyhow::Result<()> {
    let changes = changes(ws, analysis, &[Class::VerifiedUnused], fix_misplaced);
    if changes.is_empty() {
        println!(
            "nothing to remove: no verified-unused dependencies{}",
            if fix_misplaced { " or misplaced ones" } else { "" }
        );
        return Ok(());
    }
    let (texts, notes) = apply(ws, &changes)?;
    for c in &changes {
        println!("{}", c.describe());
    }
    for n in &notes {
        println!("note: {n}");
    }
    if dry_run {
        for (path, (old, new)) in &texts {
            let shown = rel(ws, path);
            print!("{}", diff::unified(old, new, &format!("a/{shown}"), &format!("b/{shown}")));
        }
        println!("dry run: nothing written");
        return Ok(());
    }
    let mut files: Vec<PathBuf> = texts.keys().cloned().collect();
    files.push(lockfile(ws));
    let txn = Transaction::begin(&files)?;
    for (path, (_, new)) in &texts {
        txn.write(path, new)?;
    }
    let packages = edited_packages(&changes);
    let verdict = confirm(cargo, &packages, false)?;
    match verdict {
        Ok(()) => {
            txn.commit();
            let moved = changes.iter().filter(|c| c.action == Action::MoveToDev).count();
            let moves = if moved > 0 {
                format!(", moved {moved} to dev-dependencies")
            } else {
                String::new()
            };
            println!(
                "removed {} declaration(s){moves}; cargo check --workspace --all-targets passes, and so does cargo check -p for {}",
                changes.len() - moved,
                packages.join(", ")
            );
            Ok(())
        }
        Err(why) => {
            txn.restore()?;
            // Blame the removals only if the workspace builds without them.
            if let Err(before) = cargo.check(false)? {
                xtask_sys::user_error!(
                    "restored every file: the workspace does not build even without the removals ({before}); fix that first"
                );
            }
            for package in &packages {
                if let Err(before) = cargo.check_package(package)? {
                    xtask_sys::user_error!(
                        "restored every file: package `{package}` does not build on its own even without the removals ({before}); fix that first"
                    );
                }
            }
            let message = format!(
                "{why}\nrestored every file; nothing was changed (try --with-verification to keep the removals that hold)"
            );
            eprintln!("{message}");
            Err(anyhow::Error::new(Exit(1)).context(message))
        }
    }
}

/// One candidate's outcome in `--with-verification`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The removal (or move) was kept: the workspace still builds.
    Changed,
    Kept(String),
    Skipped(String),
}

/// `--with-verification`: each candidate on its own: change, check (and test), keep or revert.
pub fn with_verification(
    ws: &Workspace,
    analysis: &Analysis,
    run_tests: bool,
    cargo: &Cargo,
) -> anyhow::Result<Vec<(Change, Outcome)>> {
    let candidates = changes(
        ws,
        analysis,
        &[Class::VerifiedUnused, Class::FeatureOnly, Class::NeedsInvestigation],
        true,
    );
    if candidates.is_empty() {
        println!("no candidates: nothing is unused, misplaced or in need of investigation");
        return Ok(Vec::new());
    }
    // The baseline must build, or every removal would look harmful.
    let all_features = match cargo.check(true)? {
        Ok(()) => true,
        Err(_) => match cargo.check(false)? {
            Ok(()) => {
                println!(
                    "note: the workspace does not build with --all-features; checking with default features"
                );
                false
            }
            Err(e) => xtask_sys::user_error!(
                "the workspace does not build before any change ({e}); fix that first"
            ),
        },
    };
    let mut results = Vec::new();
    for c in candidates {
        if let Some(by) = &c.compiler_used_by {
            // Settled without a build: removing it would break `by`.
            let why = format!("the compiler sees it used by {by}");
            println!("{}: kept, {why}", c.describe());
            results.push((c, Outcome::Kept(why)));
            continue;
        }
        let (texts, _) = apply(ws, std::slice::from_ref(&c))?;
        if texts.is_empty() {
            // e.g. the workspace entry went with an earlier member removal.
            let why = if c.action == Action::MoveToDev {
                "cannot be moved (optional or named by a feature)"
            } else {
                "already gone"
            };
            println!("{}: skipped, {why}", c.describe());
            results.push((c, Outcome::Skipped(why.into())));
            continue;
        }
        let mut files: Vec<PathBuf> = texts.keys().cloned().collect();
        files.push(lockfile(ws));
        let txn = Transaction::begin(&files)?;
        for (path, (_, new)) in &texts {
            txn.write(path, new)?;
        }
        let packages = edited_packages(std::slice::from_ref(&c));
        let mut verdict = confirm(cargo, &packages, all_features)?;
        if verdict.is_ok() && run_tests {
            verdict = cargo.test(all_features)?;
        }
        let outcome = match verdict {
            Ok(()) => {
                txn.commit();
                Outcome::Changed
            }
            Err(e) => {
                txn.restore()?;
                Outcome::Kept(e)
            }
        };
        match &outcome {
            Outcome::Changed => {
                println!("{}: done, the workspace and the package still build", c.describe())
            }
            Outcome::Kept(e) => println!("{}: kept, {e}", c.describe()),
            Outcome::Skipped(_) => {}
        }
        results.push((c, outcome));
    }
    let removed = results.iter().filter(|(_, o)| *o == Outcome::Changed).count();
    println!(
        "{} candidate(s): {removed} changed, {} kept or skipped",
        results.len(),
        results.len() - removed
    );
    Ok(results)
}
