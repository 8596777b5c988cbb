//! The compiler tier (`--compiler`): rustc's own `unused_crate_dependencies` lint sees
//! every use after macro expansion and `cfg`, which no scan of the sources can. It is
//! turned on only for the members, through their `[lints.rust]` table (or the root's
//! `[workspace.lints.rust]` for members that inherit their lints): unlike `RUSTFLAGS`,
//! that rebuilds no dependency. One `cargo check --workspace --all-targets` then reports,
//! per compiled target, the `--extern` crates it did not use; the manifests are restored
//! on every path (success, failure, panic, Ctrl-C) by a [`Transaction`].
//!
//! Combining per target: a normal dependency is unused when every target that receives
//! it reports it (lib, bins, their test harnesses, tests, benches, examples); test-only
//! when lib and bins report it but a test, bench or example does not; a dev-dependency
//! is unused when every test, bench and example target reports it; a build-dependency
//! when the build script does.
//!
//! Pure: [`parse_messages`], [`units`], [`verdict`], [`combine`]. Effects: [`run`].

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde_json::Value;

use super::analyze::{Analysis, Class, CompilerRun, Context, Decl, Table, Verdict};
use super::edit;
use super::load::Workspace;
use super::verify::{Cargo, Transaction};

/// A target of a member: (member, kind, name), e.g. `("app", "lib", "app")`.
type TargetKey = (String, String, String);

/// What one `cargo check --message-format json` run said.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    /// For each member target, the modes it was compiled in (`profile.test`).
    pub modes: BTreeMap<TargetKey, Vec<bool>>,
    /// For each member target, how many of its compilations reported each crate unused.
    pub reports: BTreeMap<TargetKey, BTreeMap<String, u32>>,
}

/// One compiled member target: the modes it was compiled in and its reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit {
    pub member: String,
    /// `lib`, `bin`, `test`, `bench`, `example`, `custom-build`, ...
    pub kind: String,
    pub name: String,
    /// `profile.test` of each compilation: a lib or bin is compiled plain and as a test
    /// harness.
    pub modes: Vec<bool>,
    /// How many of its compilations reported each crate unused.
    pub reports: BTreeMap<String, u32>,
}

/// One compilation of a target as a declaration sees it.
struct Compilation {
    context: Context,
    label: String,
    reported: bool,
}

impl Unit {
    fn context(&self, test: bool) -> Context {
        match self.kind.as_str() {
            "custom-build" => Context::Build,
            "test" | "bench" | "example" => Context::Dev,
            _ if test => Context::Dev,
            _ => Context::Normal,
        }
    }

    fn label(&self, test: bool) -> String {
        match (self.kind.as_str(), test) {
            ("custom-build", _) => "build script".to_string(),
            ("lib" | "rlib" | "proc-macro", false) => "lib".to_string(),
            ("lib" | "rlib" | "proc-macro", true) => "lib (test)".to_string(),
            ("bin", true) => format!("bin {} (test)", self.name),
            (kind, _) => format!("{kind} {}", self.name),
        }
    }

    /// Whether a compilation in mode `test` receives the declarations of `table`.
    fn receives(&self, test: bool, table: Table) -> bool {
        match (table, self.context(test)) {
            (Table::Normal, c) => c != Context::Build,
            (Table::Dev, c) => c == Context::Dev,
            (Table::Build, c) => c == Context::Build,
        }
    }

    /// The compilations of this target that receive a declaration of `table`, and
    /// whether each reported `krate` unused. Reports do not say which compilation they
    /// came from: when both a plain and a test-harness compilation get the crate, one
    /// report is taken as the plain one's (the harness compiles the same code plus
    /// `#[cfg(test)]` code, so it uses at least as much), two as both. The plain
    /// compilation gets the crate of a dev-dependency too when the same crate is also
    /// a normal dependency (`normal_too`): its report is the normal declaration's.
    fn compilations(&self, table: Table, krate: &str, normal_too: bool) -> Vec<Compilation> {
        let mut modes = self.modes.clone();
        modes.sort();
        modes.dedup();
        let getting_crate: Vec<bool> = modes
            .into_iter()
            .filter(|test| {
                self.receives(*test, table) || normal_too && self.receives(*test, Table::Normal)
            })
            .collect();
        let count = self.reports.get(krate).copied().unwrap_or(0);
        getting_crate
            .iter()
            .enumerate()
            .filter(|(_, test)| self.receives(**test, table))
            .map(|(i, test)| Compilation {
                context: self.context(*test),
                label: self.label(*test),
                reported: count > i as u32,
            })
            .collect()
    }
}

/// The crate named in rustc's message for the lint: "external crate `foo` unused in ...".
fn reported_crate(message: &str) -> Option<&str> {
    message.split('`').nth(1)
}

/// Reads cargo's JSON messages; `member_of` maps a member manifest to its name.
pub fn parse_messages(stdout: &str, member_of: &HashMap<PathBuf, String>) -> Observed {
    let mut out = Observed::default();
    for line in stdout.lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else { continue };
        let Some(member) = v["manifest_path"].as_str().and_then(|p| member_of.get(Path::new(p)))
        else {
            continue;
        };
        let kind = v["target"]["kind"][0].as_str().unwrap_or_default();
        let key = (
            member.clone(),
            kind.to_string(),
            v["target"]["name"].as_str().unwrap_or_default().to_string(),
        );
        match v["reason"].as_str() {
            Some("compiler-artifact") => {
                out.modes
                    .entry(key)
                    .or_default()
                    .push(v["profile"]["test"].as_bool() == Some(true));
            }
            Some("compiler-message")
                if v["message"]["code"]["code"].as_str() == Some(edit::UNUSED_CRATE_DEPS) =>
            {
                if let Some(name) = v["message"]["message"].as_str().and_then(reported_crate) {
                    *out.reports.entry(key).or_default().entry(name.to_string()).or_default() += 1;
                }
            }
            _ => {}
        }
    }
    out
}

/// The member targets cargo compiled, with what each reported.
pub fn units(observed: &Observed) -> Vec<Unit> {
    observed
        .modes
        .iter()
        .map(|((member, kind, name), modes)| Unit {
            member: member.clone(),
            kind: kind.clone(),
            name: name.clone(),
            modes: modes.clone(),
            reports: observed
                .reports
                .get(&(member.clone(), kind.clone(), name.clone()))
                .cloned()
                .unwrap_or_default(),
        })
        .collect()
}

/// The verdict on one declaration of `member` from its units, or None when no unit is
/// known to have received it (a target-specific table for another platform, an optional
/// dependency without `--all-features`, a target that did not compile).
///
/// `normal_too`: the member declares the same crate as a normal dependency as well.
pub fn verdict(
    decl: &Decl,
    member_units: &[&Unit],
    all_features: bool,
    normal_too: bool,
) -> Option<Verdict> {
    if decl.optional && !all_features {
        return None;
    }
    let receiving: Vec<Compilation> = member_units
        .iter()
        .flat_map(|u| u.compilations(decl.table, &decl.crate_name, normal_too))
        .collect();
    if receiving.is_empty() {
        return None;
    }
    if decl.target.is_some() && !receiving.iter().any(|c| c.reported) {
        // Unreported: used, or not passed to rustc at all on this platform.
        return None;
    }
    let users: Vec<&Compilation> = receiving.iter().filter(|c| !c.reported).collect();
    let Some(first) = users.first() else {
        return Some(Verdict::Unused);
    };
    let normal_user = users.iter().find(|c| c.context != Context::Dev);
    let has_normal = receiving.iter().any(|c| c.context == Context::Normal);
    match normal_user {
        None if decl.table == Table::Normal && has_normal => {
            Some(Verdict::TestOnly { by: first.label.clone() })
        }
        Some(user) => Some(Verdict::Used { by: user.label.clone() }),
        None => Some(Verdict::Used { by: first.label.clone() }),
    }
}

/// Puts the compiler's verdicts into the static analysis: a finding the compiler sees
/// used is used (whatever the static class); a normal dependency it sees used only by tests is misplaced; a "needs
/// investigation" for a reason the compiler settles (macro expansion, generated code)
/// becomes verified unused when every target reports it. Feature-only findings stay:
/// the lint cannot see features. `[workspace.dependencies]` entries are judged again.
pub fn combine(
    mut analysis: Analysis,
    ws: &Workspace,
    units: &[Unit],
    run: CompilerRun,
) -> Analysis {
    for (member, report) in ws.members.iter().zip(analysis.members.iter_mut()) {
        let member_units: Vec<&Unit> = units.iter().filter(|u| u.member == member.name).collect();
        for (decl, f) in member.decls.iter().zip(report.findings.iter_mut()) {
            let normal_too = member.decls.iter().any(|d| {
                d.table == Table::Normal && d.target.is_none() && d.crate_name == decl.crate_name
            });
            let Some(v) = verdict(decl, &member_units, run.all_features, normal_too) else {
                continue;
            };
            let settles = f.ignored_by.is_none()
                && !decl.optional
                && decl.facts.links.is_none()
                && decl.facts.has_lib;
            match (&f.class, &v) {
                (Class::Used, _) => {}
                (_, Verdict::Used { by }) => {
                    f.class = Class::Used;
                    f.evidence = format!(
                        "used by {by} after macro expansion or cfg (the compiler); the static scan found {}",
                        if f.location.is_some() { "a use only in tests" } else { "no use" }
                    );
                }
                (Class::VerifiedUnused, Verdict::TestOnly { by })
                | (Class::NeedsInvestigation, Verdict::TestOnly { by })
                    if settles =>
                {
                    f.class = Class::Misplaced;
                    f.evidence = format!(
                        "the compiler sees it used only by {by}, not by lib or bins; belongs in [dev-dependencies]"
                    );
                }
                (Class::NeedsInvestigation, Verdict::Unused) if settles => {
                    f.class = Class::VerifiedUnused;
                    f.evidence = format!(
                        "unused in every target that receives it (the compiler); static: {}",
                        f.evidence
                    );
                }
                _ => {}
            }
            f.compiler = Some(v);
        }
    }
    analysis.workspace = super::analyze::judge_workspace_entries(
        &ws.members,
        &analysis.members,
        &ws.workspace_entries,
        &ws.workspace_ignore,
    );
    analysis.compiler = Some(run);
    analysis
}

/// The manifests with the lint turned on: (path, old text, new text).
fn lint_edits(ws: &Workspace) -> anyhow::Result<Vec<(PathBuf, String, String)>> {
    let mut docs: BTreeMap<PathBuf, (String, toml_edit::DocumentMut)> = BTreeMap::new();
    let mut paths: Vec<PathBuf> = ws.manifests.values().cloned().collect();
    paths.push(ws.root_manifest.clone());
    for path in paths {
        if docs.contains_key(&path) {
            continue;
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let doc = text.parse().with_context(|| format!("parsing {}", path.display()))?;
        docs.insert(path, (text, doc));
    }
    let mut inherited = false;
    for path in ws.manifests.values() {
        let (_, doc) = docs.get_mut(path).context("member manifest not loaded")?;
        inherited |= !edit::warn_unused_crates(doc);
    }
    if inherited {
        let (_, root) = docs.get_mut(&ws.root_manifest).context("root manifest not loaded")?;
        edit::warn_unused_crates_workspace(root);
    }
    Ok(docs
        .into_iter()
        .map(|(path, (old, doc))| (path, old, doc.to_string()))
        .filter(|(_, old, new)| old != new)
        .collect())
}

/// Whether the lint itself failed the build (`-D warnings` from RUSTFLAGS or the code).
fn denied_lint(stdout: &str) -> bool {
    stdout.lines().any(|line| {
        serde_json::from_str::<Value>(line).is_ok_and(|v| {
            v["message"]["level"] == "error"
                && v["message"]["code"]["code"].as_str() == Some(edit::UNUSED_CRATE_DEPS)
        })
    })
}

/// The first compiler error in cargo's JSON output.
fn first_json_error(stdout: &str) -> Option<String> {
    stdout.lines().find_map(|line| {
        let v: Value = serde_json::from_str(line).ok()?;
        (v["reason"] == "compiler-message" && v["message"]["level"] == "error").then(|| {
            v["message"]["rendered"]
                .as_str()
                .unwrap_or_default()
                .lines()
                .next()
                .unwrap_or_default()
                .to_string()
        })
    })
}

/// Turns the lint on, runs one check of every target of every member (with
/// `--all-features`, or the default features), restores the manifests, and returns the
/// compilations with what they reported. A workspace that does not build that way is
/// refused after that one check: a second try with other features could take as long
/// again and still fail.
pub fn run(
    ws: &Workspace,
    cargo: &Cargo,
    all_features: bool,
) -> anyhow::Result<(Vec<Unit>, CompilerRun)> {
    let edits = lint_edits(ws)?;
    let mut files: Vec<PathBuf> = edits.iter().map(|(p, _, _)| p.clone()).collect();
    files.push(ws.root.join("Cargo.lock"));
    let txn = Transaction::begin(&files)?;
    for (path, _, new) in &edits {
        txn.write(path, new)?;
    }
    let started = std::time::Instant::now();
    let mut args = vec!["check", "--workspace", "--all-targets", "--message-format", "json"];
    if all_features {
        args.push("--all-features");
    }
    let stdout = match cargo.run_capturing(&args)? {
        (stdout, Ok(())) => stdout,
        (stdout, Err(e)) => {
            txn.restore()?;
            if denied_lint(&stdout) {
                xtask_sys::user_error!(
                    "the compiler tier turns {} on as a warning, but warnings are errors in this build (RUSTFLAGS with -D warnings?); run it without that",
                    edit::UNUSED_CRATE_DEPS
                );
            }
            let why = first_json_error(&stdout).unwrap_or(e);
            let (features, other) = if all_features {
                ("--all-features", "; if only the default features build, add --default-features")
            } else {
                ("default features", "")
            };
            xtask_sys::user_error!(
                "the compiler tier needs a workspace that builds: cargo check --workspace --all-targets with {features} failed ({why}); fix that first{other}"
            );
        }
    };
    let millis = started.elapsed().as_millis() as u64;
    txn.restore()?;
    let member_of: HashMap<PathBuf, String> =
        ws.manifests.iter().map(|(name, path)| (path.clone(), name.clone())).collect();
    let observed = parse_messages(&stdout, &member_of);
    Ok((units(&observed), CompilerRun { millis, all_features }))
}

/// Runs the compiler tier with `--all-features` and combines it with the static
/// `analysis`.
pub fn confirm(ws: &Workspace, analysis: Analysis, cargo: &Cargo) -> anyhow::Result<Analysis> {
    confirm_with(ws, analysis, cargo, true)
}

/// [`confirm`], with `--all-features` or with the default features.
pub fn confirm_with(
    ws: &Workspace,
    analysis: Analysis,
    cargo: &Cargo,
    all_features: bool,
) -> anyhow::Result<Analysis> {
    let (units, run) = run(ws, cargo, all_features)?;
    Ok(combine(analysis, ws, &units, run))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::test_decl as decl;

    #[test]
    fn messages_are_combined_per_target_and_per_table() {
        let manifest = "/ws/app/Cargo.toml";
        let artifact = |kind: &str, name: &str, test: bool| {
            format!(
                r#"{{"reason":"compiler-artifact","manifest_path":"{manifest}","target":{{"kind":["{kind}"],"name":"{name}"}},"profile":{{"test":{test}}}}}"#
            )
        };
        let unused = |kind: &str, name: &str, krate: &str| {
            format!(
                r#"{{"reason":"compiler-message","manifest_path":"{manifest}","target":{{"kind":["{kind}"],"name":"{name}"}},"message":{{"code":{{"code":"unused_crate_dependencies"}},"message":"extern crate `{krate}` is unused in crate `{name}`"}}}}"#
            )
        };
        let lines = [
            artifact("lib", "app", false),
            artifact("lib", "app", true),
            artifact("test", "it", true),
            artifact("custom-build", "build-script-build", false),
            // `only_tests`: lib plain reports it, the harness and `it` use it.
            unused("lib", "app", "only_tests"),
            // `dead`: every compilation reports it.
            unused("lib", "app", "dead"),
            unused("lib", "app", "dead"),
            unused("test", "it", "dead"),
            // dev `dev_dead`: the harness and `it` report it (lib plain never gets it).
            unused("lib", "app", "dev_dead"),
            unused("test", "it", "dev_dead"),
            // dev `dev_used`: only `it` reports it, the harness uses it.
            unused("test", "it", "dev_used"),
            unused("test", "it", "only_tests"),
            unused("custom-build", "build-script-build", "build_dead"),
            "not json".to_string(),
        ];
        assert!(!denied_lint(&lines.join("\n")));
        assert!(denied_lint(
            &lines[4].replace(r#""code":{"code""#, r#""level":"error","code":{"code""#)
        ));
        let member_of = HashMap::from([(PathBuf::from(manifest), "app".to_string())]);
        let units = units(&parse_messages(&lines.join("\n"), &member_of));
        assert_eq!(units.len(), 3);
        let refs: Vec<&Unit> = units.iter().collect();
        let v = |name: &str, table: Table| verdict(&decl(name, table), &refs, true, false);
        assert_eq!(v("used", Table::Normal), Some(Verdict::Used { by: "lib".into() }));
        assert_eq!(v("dead", Table::Normal), Some(Verdict::Unused));
        assert_eq!(
            v("only_tests", Table::Normal),
            Some(Verdict::TestOnly { by: "lib (test)".into() })
        );
        assert_eq!(v("dev_dead", Table::Dev), Some(Verdict::Unused));
        assert_eq!(v("dev_used", Table::Dev), Some(Verdict::Used { by: "lib (test)".into() }));
        assert_eq!(v("build_dead", Table::Build), Some(Verdict::Unused));
        assert_eq!(
            v("build_used", Table::Build),
            Some(Verdict::Used { by: "build script".into() })
        );
        let mut windows = decl("win", Table::Normal);
        windows.target = Some("cfg(windows)".into());
        assert_eq!(verdict(&windows, &refs, true, false), None, "maybe never passed to rustc here");
        let mut optional = decl("opt", Table::Normal);
        optional.optional = true;
        assert_eq!(
            verdict(&optional, &refs, false, false),
            None,
            "not enabled without --all-features"
        );
    }
}
