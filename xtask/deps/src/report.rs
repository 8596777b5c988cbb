//! Renders an [`Analysis`]: the terminal table, JSON, and the Markdown report.

use serde::Serialize;
use std::fmt::Write as _;

use super::analyze::{Analysis, Class, Finding, Saving};

/// The evidence, with the compiler tier's verdict and the build saving when known.
fn evidence(f: &Finding) -> String {
    let mut out = f.evidence.clone();
    if let Some(v) = &f.compiler {
        let _ = write!(out, " [compiler: {}]", v.label());
    }
    if let Some(s) = &f.saving {
        let _ = write!(out, " [removal saves {}]", saving_text(s));
    }
    out
}

/// `3 crates, 4.2 s` (seconds only when cargo's timings had them).
fn saving_text(s: &Saving) -> String {
    let crates = match s.crates.len() {
        1 => "1 crate".to_string(),
        n => format!("{n} crates"),
    };
    match s.seconds {
        Some(secs) => format!("{crates}, {secs:.1} s"),
        None => crates,
    }
}

fn table_label(f: &Finding) -> String {
    match &f.target {
        Some(target) => format!("target.'{target}'.{}", f.table.toml_name()),
        None => f.table.toml_name().to_string(),
    }
}

/// The per-member tables and the summary line.
pub fn text(a: &Analysis) -> String {
    let mut out = String::new();
    let widths = |rows: &[[String; 4]]| {
        let mut w = [10, 5, 5, 8];
        for r in rows {
            for (i, c) in r.iter().enumerate().take(3) {
                w[i] = w[i].max(c.len());
            }
        }
        w
    };
    let mut emit = |title: String, rows: Vec<[String; 4]>| {
        if rows.is_empty() {
            return;
        }
        let w = widths(&rows);
        let _ = writeln!(out, "{title}");
        let _ = writeln!(
            out,
            "  {:w0$}  {:w1$}  {:w2$}  evidence",
            "dependency",
            "table",
            "class",
            w0 = w[0],
            w1 = w[1],
            w2 = w[2]
        );
        for r in rows {
            let _ = writeln!(
                out,
                "  {:w0$}  {:w1$}  {:w2$}  {}",
                r[0],
                r[1],
                r[2],
                r[3],
                w0 = w[0],
                w1 = w[1],
                w2 = w[2]
            );
        }
        let _ = writeln!(out);
    };
    for m in &a.members {
        let rows = m
            .findings
            .iter()
            .map(|f| {
                let name = if f.package != f.key {
                    format!("{} ({})", f.key, f.package)
                } else {
                    f.key.clone()
                };
                [name, table_label(f), f.class.label().to_string(), evidence(f)]
            })
            .collect();
        emit(format!("{} ({})", m.name, m.manifest), rows);
    }
    let rows = a
        .workspace
        .iter()
        .map(|w| {
            [
                w.key.clone(),
                "workspace.dependencies".into(),
                w.class.label().into(),
                w.evidence.clone(),
            ]
        })
        .collect();
    emit(format!("[workspace.dependencies] ({})", a.root_manifest), rows);
    for w in &a.warnings {
        let _ = writeln!(out, "warning: {w}");
    }
    let _ = writeln!(out, "{}", summary(a));
    out
}

pub fn summary(a: &Analysis) -> String {
    let compiler = match &a.compiler {
        Some(run) => format!(
            "; compiler tier ({:.1} s of cargo check{}): {} of them confirmed",
            run.millis as f64 / 1000.0,
            if run.all_features { " --all-features" } else { "" },
            a.compiler_confirmed()
        ),
        None => String::new(),
    };
    let counts = format!(
        "{} dependency declarations analyzed, {} potentially unused ({} verified unused, {} misplaced, {} feature-only, {} need investigation)",
        a.declarations(),
        a.count(&Class::VerifiedUnused)
            + a.count(&Class::Misplaced)
            + a.count(&Class::FeatureOnly)
            + a.count(&Class::NeedsInvestigation),
        a.count(&Class::VerifiedUnused),
        a.count(&Class::Misplaced),
        a.count(&Class::FeatureOnly),
        a.count(&Class::NeedsInvestigation),
    );
    let saving = match &a.total_saving {
        Some(s) if a.count(&Class::VerifiedUnused) > 0 => format!(
            "; removing the verified-unused ones saves {}{}",
            saving_text(s),
            if s.seconds.is_some() {
                " of build time (cargo --timings)"
            } else {
                " (no cargo --timings data to time them)"
            }
        ),
        _ => String::new(),
    };
    format!("{counts}{compiler}{saving}")
}

/// The analysis as JSON: typed records serialized straight to text (no intermediate
/// `serde_json::Value`), their fields declared in alphabetical order, the order the
/// output has always had.
pub fn json(a: &Analysis) -> String {
    #[derive(Serialize)]
    struct Report<'a> {
        members: Vec<MemberJson<'a>>,
        summary: Summary<'a>,
        warnings: &'a [String],
        workspace_dependencies: Vec<WorkspaceJson<'a>>,
    }
    #[derive(Serialize)]
    struct MemberJson<'a> {
        dependencies: Vec<FindingJson<'a>>,
        manifest: &'a str,
        name: &'a str,
    }
    #[derive(Serialize)]
    struct FindingJson<'a> {
        class: &'static str,
        compiler: Option<&'static str>,
        evidence: &'a str,
        ignored_by: &'a Option<String>,
        key: &'a str,
        location: Option<LocationJson<'a>>,
        optional: bool,
        package: &'a str,
        saving: Option<SavingJson<'a>>,
        table: &'static str,
        target: &'a Option<String>,
    }
    #[derive(Serialize)]
    struct LocationJson<'a> {
        file: &'a str,
        line: u32,
    }
    #[derive(Serialize)]
    struct WorkspaceJson<'a> {
        class: &'static str,
        evidence: &'a str,
        ignored_by: &'a Option<String>,
        key: &'a str,
    }
    #[derive(Serialize)]
    struct Summary<'a> {
        compiler_confirmed: Option<usize>,
        compiler_seconds: Option<f64>,
        declarations: usize,
        feature_only: usize,
        misplaced: usize,
        needs_investigation: usize,
        saving: Option<SavingJson<'a>>,
        used: usize,
        verified_unused: usize,
    }
    let members = a
        .members
        .iter()
        .map(|m| MemberJson {
            dependencies: m
                .findings
                .iter()
                .map(|f| FindingJson {
                    class: f.class.label(),
                    compiler: f.compiler.as_ref().map(|v| v.label()),
                    evidence: &f.evidence,
                    ignored_by: &f.ignored_by,
                    key: &f.key,
                    location: f
                        .location
                        .as_ref()
                        .map(|l| LocationJson { file: &l.file, line: l.line }),
                    optional: f.optional,
                    package: &f.package,
                    saving: f.saving.as_ref().map(SavingJson::of),
                    table: f.table.toml_name(),
                    target: &f.target,
                })
                .collect(),
            manifest: &m.manifest,
            name: &m.name,
        })
        .collect();
    let workspace_dependencies = a
        .workspace
        .iter()
        .map(|w| WorkspaceJson {
            class: w.class.label(),
            evidence: &w.evidence,
            ignored_by: &w.ignored_by,
            key: &w.key,
        })
        .collect();
    let report = Report {
        members,
        summary: Summary {
            compiler_confirmed: a.compiler.as_ref().map(|_| a.compiler_confirmed()),
            compiler_seconds: a.compiler.as_ref().map(|r| r.millis as f64 / 1000.0),
            declarations: a.declarations(),
            feature_only: a.count(&Class::FeatureOnly),
            misplaced: a.count(&Class::Misplaced),
            needs_investigation: a.count(&Class::NeedsInvestigation),
            saving: a.total_saving.as_ref().map(SavingJson::of),
            used: a.count(&Class::Used),
            verified_unused: a.count(&Class::VerifiedUnused),
        },
        warnings: &a.warnings,
        workspace_dependencies,
    };
    let mut out = serde_json::to_string_pretty(&report).expect("the report always serializes");
    out.push('\n');
    out
}

#[derive(Serialize)]
struct SavingJson<'a> {
    crates: &'a [String],
    seconds: Option<f64>,
}

impl SavingJson<'_> {
    fn of(s: &Saving) -> SavingJson<'_> {
        SavingJson { crates: &s.crates, seconds: s.seconds }
    }
}

/// `docs/analysis/unused-dependencies-analysis.md`: the three sections of the original
/// analysis (verified unused, likely unused, needs investigation), methodology and
/// limitations.
pub fn markdown(a: &Analysis) -> String {
    let mut out = String::new();
    let rows = |class: &dyn Fn(&Finding) -> bool| -> Vec<String> {
        let mut rows = Vec::new();
        for m in &a.members {
            for f in m.findings.iter().filter(|f| class(f)) {
                let name = if f.package != f.key {
                    format!("`{}` (package `{}`)", f.key, f.package)
                } else {
                    format!("`{}`", f.key)
                };
                rows.push(format!(
                    "| {} | `{}` | {} | {} |",
                    m.name,
                    table_label(f),
                    name,
                    evidence(f).replace('|', "\\|")
                ));
            }
        }
        rows
    };
    let section = |out: &mut String, title: &str, intro: &str, rows: Vec<String>| {
        let _ = writeln!(out, "## {title}\n\n{intro}\n");
        if rows.is_empty() {
            let _ = writeln!(out, "None.\n");
        } else {
            let _ = writeln!(
                out,
                "| member | table | dependency | evidence |\n| --- | --- | --- | --- |"
            );
            for r in rows {
                let _ = writeln!(out, "{r}");
            }
            let _ = writeln!(out);
        }
    };
    let _ = writeln!(out, "# Unused dependencies analysis\n");
    let _ = writeln!(out, "Generated by `cargo xtask deps --report`; do not edit by hand.\n");
    let _ = writeln!(out, "{}.\n", summary(a));
    let no_lib = |f: &Finding| f.evidence.starts_with("has no library target");

    let mut verified = rows(&|f| f.class == Class::VerifiedUnused);
    for w in a.workspace.iter().filter(|w| w.class == Class::VerifiedUnused) {
        verified.push(format!(
            "| (workspace) | `workspace.dependencies` | `{}` | {} |",
            w.key, w.evidence
        ));
    }
    section(
        &mut out,
        "Verified Unused",
        "Referenced nowhere in the targets that can use them, with nothing that could need them \
         without a reference. `cargo xtask deps --verified-only` removes them and confirms the \
         workspace still builds.",
        verified,
    );
    section(
        &mut out,
        "Likely Unused",
        "Normal dependencies used only by tests, benches, examples or doc tests (they belong in \
         `[dev-dependencies]`; `--verified-only --fix-misplaced` moves them), and packages without \
         a library target (tools listed as dependencies).",
        rows(&|f| {
            f.class == Class::Misplaced || (f.class == Class::NeedsInvestigation && no_lib(f))
        }),
    );
    section(
        &mut out,
        "Feature Only",
        "Not named in code, but removing it could change what gets compiled through feature \
         unification (per the resolve graph): declared with `features = [...]` or named by a \
         `[features]` entry while the workspace gets the same package another way too, a \
         package that switches on a feature nothing else asks for of a package the member gets \
         another way, cargo-hakari's workspace-hack crate and that crate's own entries. Never \
         removed by `--verified-only`; `--with-verification` removes one only if every package \
         still builds on its own (`cargo check -p`).",
        rows(&|f| f.class == Class::FeatureOnly),
    );
    let mut investigate = rows(&|f| f.class == Class::NeedsInvestigation && !no_lib(f));
    for w in a.workspace.iter().filter(|w| w.class == Class::NeedsInvestigation) {
        investigate.push(format!(
            "| (workspace) | `workspace.dependencies` | `{}` | {} |",
            w.key, w.evidence
        ));
    }
    section(
        &mut out,
        "Needs Investigation",
        "Not referenced by path, but possibly needed anyway. `cargo xtask deps --with-verification` \
         removes each one, builds, and keeps the removal only if the workspace still compiles.",
        investigate,
    );
    if !a.warnings.is_empty() {
        let _ = writeln!(out, "## Warnings\n");
        for w in &a.warnings {
            let _ = writeln!(out, "- {w}");
        }
        let _ = writeln!(out);
    }
    out.push_str(METHODOLOGY);
    out
}

const METHODOLOGY: &str = "## Methodology

- Declarations come from `cargo metadata --all-features` (no compilation): every member's
  `[dependencies]`, `[dev-dependencies]`, `[build-dependencies]` and their
  `[target.'cfg(..)'.*]` variants, and the root's `[workspace.dependencies]`. Each is
  resolved to the name code uses: the rename (`package = ...`), else the dependency's
  library name (`[lib] name`), with `-` read as `_`.
- Only the resolve facts (library names, proc-macro, `links`) need the full graph. They
  and the `--no-deps` metadata are cached in `target/xtask/` under a hash of what they
  depend on (`Cargo.lock`, every manifest, the directories cargo discovers targets and
  members from), so a repeated run starts no cargo process; `--no-cache` ignores them.
- Sources are found the way the compiler finds them: from each target's root file
  (lib, bins, tests, benches, examples, `build.rs`) through `mod x;` to `x.rs` or
  `x/mod.rs`, honouring `#[path]`, inline modules and `include!(\"file.rs\")`.
- A small lexer skips comments, strings, char literals and lifetimes. A reference is the
  first segment of a path (`foo::x`, `::foo::x`, `#[foo::attr]`, `foo::m!()`), a root of a
  `use` tree (`use foo;`, `use foo as bar;`, `use {foo::x, bar};`), `extern crate foo`,
  a path inside an attribute string (`#[serde(with = \"foo::bar\")]`, `crate = \"foo\"`),
  or one of these inside a Rust code block of a doc comment or of a Markdown file
  included as docs (`#![doc = include_str!(\"../README.md\")]`): doc tests.
- Contexts: code in lib and bins is normal; tests, benches, examples, `#[cfg(test)]`
  items (and modules declared under it), `#[test]` / `#[x::test]` functions and doc
  tests are dev; `build.rs` is build. A
  normal dependency must be referenced somewhere, a dev dependency in dev (or normal)
  code, a build dependency in `build.rs`. A normal dependency referenced only in dev code
  is misplaced.
- A path whose first segment is a module declared or imported (`use crate::..::foo`) in
  the same module, or in a block around it, is local, not a crate.
- Unreferenced declarations that could be needed without a reference are \"needs
  investigation\": crates other crates' macros expand to (a known list, `X` for a used
  proc-macro `X_derive`/`X_macros`/..., and every `::name::` path in the `macro_rules!`
  and `quote!` bodies of the dependencies the member names, read from their sources),
  crates with `links`, optional dependencies, packages without a library, dependencies of
  packages that include code generated by `build.rs` that has not been built yet (once
  built, the generated files in `target/` are read like sources), and entries of an
  ignore list (`[package.metadata.xtask-deps] ignore`, `[package.metadata.cargo-machete]
  ignored`, `[package.metadata.cargo-shear] ignored`, and the `workspace.metadata`
  equivalents).
- Unreferenced declarations whose removal could change what gets compiled through
  feature unification are \"feature-only\", never \"verified unused\", judged on `cargo
  metadata`'s resolve graph: declared with `features = [...]` or named by a `[features]`
  entry (`dep/feature`) while the workspace gets the same package another way too; a
  package that switches on (itself or through packages only it brings in) a feature that
  nothing else the member depends on asks for, of a package the member gets another way;
  cargo-hakari's workspace-hack crate (`hakari-package` in `.config/hakari.toml`, else
  `workspace-hack`) and every entry of that crate's own manifest. A declaration with
  features that nothing else in the graph depends on is an ordinary finding.
- Besides each target's module tree, the `.rs` files below the lib's and bins' source
  directories that no `mod` reaches are scanned too (a macro may declare the module).
- A proc-macro crate named nowhere (no path, attribute, derive import, `extern crate` or
  macro call) and that no other crate's macros expand to is verified unused.

- Each finding that is not used shows what its removal saves: the crate and every
  transitive dependency nothing else in the workspace still needs (from `cargo metadata`'s
  resolve graph), with their compile time from cargo's `--timings` report when one exists.
- The compiler tier (`cargo xtask deps --compiler`, always part of
  `--with-verification`) checks every target with rustc's `unused_crate_dependencies`
  lint turned on for the members only, and combines the reports per target; this report
  is the static scan's alone.

## Limitations

- Macro expansion is not performed: a crate used only inside another crate's macro
  expansion is found through the known list and the paths in the dependencies' macro
  bodies above, not when the macro gets the name as an argument. If `--verified-only` then
  breaks the build it restores every file; the compiler tier sees such uses.
- Code blocks in the doc comments of binaries count as doc tests, although rustdoc does
  not run them (this errs towards \"used\"). Indented (unfenced) code blocks are not
  read as doc tests.
- The removal checks run `cargo check --workspace --all-targets` and `cargo check -p PKG
  --all-targets` for every edited package (feature unification across members can hide a
  package that no longer builds on its own); neither compiles
  doc tests: a dev-dependency only a doc test needs, if misjudged, would pass the check.
  `--with-verification --test` runs the tests, doc tests included.
- `cfg` conditions other than `test` are not evaluated: code under any `cfg` counts.
- Feature requests are matched by package name, and a feature another package asks for
  counts as asked for even when it is already on by default: both err towards
  \"feature-only\". The per-package check of `--verified-only` catches what slips
  through, and an ignore list keeps it.
- Modules declared by macros are not followed; their files are scanned only when they lie
  below a lib's or bin's source directory. Files included through computed paths are not
  followed.
- Glob imports of local modules (`use super::*`) that bring a module named like a crate
  into scope are not tracked.
";
