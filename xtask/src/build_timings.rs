//! `cargo xtask build-timings`: where a clean build's time goes. Runs
//! `cargo build --workspace --all-targets --timings` into a scratch target directory and
//! reads cargo's own report (the `UNIT_DATA` of `cargo-timing.html`): the slowest units,
//! the crates compiled more than once and how the copies differ, and the critical path.
//! Reading and analysing are pure; the task runs cargo.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use serde::Deserialize;

use crate::sys::error::Exit;
use crate::sys::{command, error, paths};

#[derive(clap::Args)]
#[command(after_help = "\
Builds from scratch (its own target directory, emptied first; CARGO_INCREMENTAL=0 as in
CI), so it takes as long as a cold CI build. cargo's full report stays in
target/xtask/build-timings/target/cargo-timings/cargo-timing.html.

Examples:
  cargo xtask build-timings
  cargo xtask build-timings --top 25 --release")]
pub struct Args {
    /// Build the release profile
    #[arg(long)]
    release: bool,
    /// How many of the slowest units to list
    #[arg(long, default_value_t = 15)]
    top: usize,
    /// Analyse an existing cargo-timing.html instead of building
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
}

/// One unit of cargo's timing report.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Unit {
    pub i: usize,
    pub name: String,
    pub version: String,
    /// `todo` (compiling) or `run-custom-build` (running a build script).
    pub mode: String,
    /// `""` (the library), ` build-script`, ` test`, ` "name" bin`, ...
    pub target: String,
    #[serde(default)]
    pub features: Vec<String>,
    pub start: f64,
    pub duration: f64,
    #[serde(default, alias = "unlocked_units")]
    pub unblocked_units: Vec<usize>,
    #[serde(default, alias = "unlocked_rmeta_units")]
    pub unblocked_rmeta_units: Vec<usize>,
}

impl Unit {
    fn label(&self) -> String {
        let run = if self.mode == "run-custom-build" && !self.target.contains("(run)") {
            " (run)"
        } else {
            ""
        };
        format!("{} v{}{}{run}", self.name, self.version, self.target)
    }
}

/// The units of a `cargo-timing.html`, read with the `deps` crate's reader (its savings
/// read the same report).
pub fn parse_report(html: &str) -> Result<Vec<Unit>, String> {
    xtask_deps::cargo_timings::units(html)
}

/// A crate compiled more than once in one build, and how the copies differ.
#[derive(Debug, PartialEq)]
pub struct Duplicate {
    pub label: String,
    pub durations: Vec<f64>,
    /// Features of each copy that the others lack.
    pub differences: Vec<Vec<String>>,
}

#[derive(Debug, PartialEq)]
pub struct Analysis {
    pub units: usize,
    /// When the last unit finished.
    pub wall: f64,
    /// The sum of all units' durations (what two cores share).
    pub cpu: f64,
    pub slowest: Vec<(String, f64)>,
    pub duplicates: Vec<Duplicate>,
    /// From the first unit to the last, each waiting for the one before.
    pub critical_path: Vec<(String, f64, f64)>,
}

pub fn analyze(units: &[Unit], top: usize) -> Analysis {
    let end = |u: &Unit| u.start + u.duration;
    let wall = units.iter().map(end).fold(0.0, f64::max);
    let cpu = units.iter().map(|u| u.duration).sum();
    let mut slowest: Vec<(String, f64)> = units.iter().map(|u| (u.label(), u.duration)).collect();
    slowest.sort_by(|a, b| b.1.total_cmp(&a.1));
    slowest.truncate(top);

    let mut copies: BTreeMap<(String, String, String, String), Vec<&Unit>> = BTreeMap::new();
    for unit in units {
        let key = (unit.name.clone(), unit.version.clone(), unit.target.clone(), unit.mode.clone());
        copies.entry(key).or_default().push(unit);
    }
    let mut duplicates: Vec<Duplicate> = copies
        .into_values()
        .filter(|units| units.len() > 1)
        .map(|units| {
            let differences = units
                .iter()
                .map(|u| {
                    u.features
                        .iter()
                        .filter(|f| units.iter().any(|other| !other.features.contains(f)))
                        .cloned()
                        .collect()
                })
                .collect();
            Duplicate {
                label: units[0].label(),
                durations: units.iter().map(|u| u.duration).collect(),
                differences,
            }
        })
        .collect();
    duplicates.sort_by(|a, b| {
        b.durations.iter().sum::<f64>().total_cmp(&a.durations.iter().sum::<f64>())
    });

    // Who unblocked whom: each unit's predecessors are the units that list it.
    let by_index: BTreeMap<usize, &Unit> = units.iter().map(|u| (u.i, u)).collect();
    let mut predecessors: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for unit in units {
        for next in unit.unblocked_units.iter().chain(&unit.unblocked_rmeta_units) {
            predecessors.entry(*next).or_default().push(unit.i);
        }
    }
    let mut critical_path = Vec::new();
    let mut current = units.iter().max_by(|a, b| end(a).total_cmp(&end(b)));
    while let Some(unit) = current {
        critical_path.push((unit.label(), unit.start, unit.duration));
        current = predecessors
            .get(&unit.i)
            .into_iter()
            .flatten()
            .filter_map(|i| by_index.get(i).copied())
            .max_by(|a, b| end(a).total_cmp(&end(b)));
    }
    critical_path.reverse();
    Analysis { units: units.len(), wall, cpu, slowest, duplicates, critical_path }
}

pub fn render(analysis: &Analysis) -> String {
    let mut out = format!(
        "{} units; wall {:.1} s; {:.1} s of compile time in all ({:.1} cores busy on average)\n\nslowest units:\n",
        analysis.units,
        analysis.wall,
        analysis.cpu,
        if analysis.wall > 0.0 { analysis.cpu / analysis.wall } else { 0.0 }
    );
    for (label, seconds) in &analysis.slowest {
        out.push_str(&format!("  {seconds:>6.1} s  {label}\n"));
    }
    out.push_str("\ncompiled more than once (features of each copy that another lacks):\n");
    if analysis.duplicates.is_empty() {
        out.push_str("  none\n");
    }
    for duplicate in &analysis.duplicates {
        let copies: Vec<String> = duplicate
            .durations
            .iter()
            .zip(&duplicate.differences)
            .map(|(seconds, extra)| match extra.is_empty() {
                true => format!("{seconds:.1} s"),
                false => format!("{seconds:.1} s +[{}]", extra.join(", ")),
            })
            .collect();
        out.push_str(&format!("  {}: {}\n", duplicate.label, copies.join(" | ")));
    }
    out.push_str("\ncritical path (start, duration):\n");
    for (label, start, duration) in &analysis.critical_path {
        out.push_str(&format!("  {start:>6.1} s  {duration:>5.1} s  {label}\n"));
    }
    out
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let report = match args.report {
        Some(report) => report,
        None => {
            let target = paths::xtask_dir().join("build-timings").join("target");
            let _ = std::fs::remove_dir_all(&target);
            crate::sys::interrupts::catch_interrupts();
            let mut command = command::cargo();
            command
                .args(["build", "--workspace", "--all-targets", "--timings"])
                .args(args.release.then_some("--release"))
                .env("CARGO_TARGET_DIR", &target)
                .env("CARGO_INCREMENTAL", "0");
            eprintln!(
                "xtask: cargo build --workspace --all-targets --timings, from scratch in {}",
                paths::display_path(&target)
            );
            let started = Instant::now();
            let status =
                crate::sys::process::run_owned(&mut command, std::time::Duration::from_secs(5))?;
            crate::sys::interrupts::check_interrupted()?;
            if !status.success() {
                eprintln!("error: the build failed ({status})");
                return Err(Exit(1).into());
            }
            eprintln!("xtask: built in {:.1} s", started.elapsed().as_secs_f64());
            target.join("cargo-timings").join("cargo-timing.html")
        }
    };
    let html = std::fs::read_to_string(&report)
        .map_err(|e| error::UserError(format!("cannot read {}: {e}", report.display())))?;
    let units =
        parse_report(&html).map_err(|e| error::UserError(format!("{}: {e}", report.display())))?;
    print!("{}", render(&analyze(&units, args.top)));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT: &str = r#"<html><script>
const UNIT_DATA = [
{"i": 0, "name": "syn", "version": "2.0.0", "mode": "todo", "target": "", "features": ["default", "full"], "start": 0.0, "duration": 4.0, "unblocked_units": [2], "unblocked_rmeta_units": [], "sections": null},
{"i": 1, "name": "syn", "version": "2.0.0", "mode": "todo", "target": "", "features": ["default"], "start": 0.5, "duration": 3.0, "unblocked_units": [], "unblocked_rmeta_units": [3], "sections": null},
{"i": 2, "name": "serde_derive", "version": "1.0.0", "mode": "todo", "target": "", "features": [], "start": 4.0, "duration": 2.0, "unblocked_units": [3], "unblocked_rmeta_units": [], "sections": null},
{"i": 3, "name": "app", "version": "0.1.0", "mode": "todo", "target": " app \"bin\"", "features": [], "start": 6.0, "duration": 5.0, "unblocked_units": [], "unblocked_rmeta_units": [], "sections": null}
];
const CONCURRENCY_DATA = [];
</script></html>"#;

    #[test]
    fn units_duplicates_and_the_critical_path_come_from_cargos_report() {
        let units = parse_report(REPORT).unwrap();
        assert_eq!(units.len(), 4);
        let analysis = analyze(&units, 2);
        assert_eq!((analysis.units, analysis.wall, analysis.cpu), (4, 11.0, 14.0));
        assert_eq!(analysis.slowest[0], ("app v0.1.0 app \"bin\"".to_string(), 5.0));
        assert_eq!(analysis.duplicates.len(), 1);
        assert_eq!(analysis.duplicates[0].durations, vec![4.0, 3.0]);
        assert_eq!(analysis.duplicates[0].differences, vec![vec!["full".to_string()], vec![]]);
        let path: Vec<&str> = analysis.critical_path.iter().map(|(l, _, _)| l.as_str()).collect();
        assert_eq!(path, ["syn v2.0.0", "serde_derive v1.0.0", "app v0.1.0 app \"bin\""]);
        let text = render(&analysis);
        assert!(text.contains("syn v2.0.0: 4.0 s +[full] | 3.0 s"), "{text}");
    }
}
