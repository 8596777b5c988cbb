//! `cargo xtask ci-report`: what the run history says. Per mode: runs, pass rate, wall
//! time and each phase's (p50, p90), start-up failures; the flakiest and the slowest
//! tests; and a picture, an SVG chart of every run's phases stacked, by mode, with each
//! mode's p90 line. Summarising and drawing are pure; the task reads and writes files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::github;
use crate::history::{self, Record};
use crate::project;

#[derive(clap::Args)]
#[command(after_help = "\
Reads target/xtask/history.jsonl (or $TASKER_CI_HISTORY), where every ci-native, ci-docker
and test run adds a line. Writes target/xtask/ci-report/report.md and runs.svg (a chart
of the last runs) and, on GitHub, the step summary.

Examples:
  cargo xtask ci-report
  cargo xtask ci-report --import target/history     merge the records of CI artifacts first
  cargo xtask ci-report --last 20")]
pub struct Args {
    /// History files (or directories searched for *.jsonl) whose records are merged into
    /// the history first; records already there are skipped
    #[arg(long, value_name = "PATH", num_args = 1..)]
    import: Vec<PathBuf>,
    /// How many of the latest runs the chart shows
    #[arg(long, value_name = "N", default_value_t = 50)]
    last: usize,
    /// Where report.md and runs.svg go (default: target/xtask/ci-report)
    #[arg(long, value_name = "DIR")]
    output: Option<PathBuf>,
}

/// The p-th percentile (nearest rank) of `values`.
pub fn percentile(values: &[f64], p: f64) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// One mode's numbers.
#[derive(Debug, PartialEq)]
pub struct ModeSummary {
    pub mode: String,
    pub runs: usize,
    pub passed: usize,
    pub startup_failures: usize,
    pub wall_p50: f64,
    pub wall_p90: f64,
    /// Each phase's p50 and p90, in the order the phases first ran.
    pub phases: Vec<(String, f64, f64)>,
}

#[derive(Debug, PartialEq)]
pub struct Summary {
    pub modes: Vec<ModeSummary>,
    /// Test, times it was flaky, times it ran.
    pub flakiest: Vec<(String, usize, usize)>,
    /// Test, p50 seconds, times it ran.
    pub slowest: Vec<(String, f64, usize)>,
}

pub fn summarize(records: &[Record]) -> Summary {
    let mut modes: Vec<String> = Vec::new();
    for record in records {
        if !modes.contains(&record.mode) {
            modes.push(record.mode.clone());
        }
    }
    let modes = modes
        .into_iter()
        .map(|mode| {
            let runs: Vec<&Record> = records.iter().filter(|r| r.mode == mode).collect();
            let walls: Vec<f64> = runs.iter().map(|r| r.wall_seconds).collect();
            let mut phase_names: Vec<String> = Vec::new();
            for run in &runs {
                for phase in &run.phases {
                    if !phase_names.contains(&phase.name) {
                        phase_names.push(phase.name.clone());
                    }
                }
            }
            let phases = phase_names
                .into_iter()
                .map(|name| {
                    let values: Vec<f64> = runs
                        .iter()
                        .filter_map(|r| r.phases.iter().find(|p| p.name == name).map(|p| p.seconds))
                        .collect();
                    let (p50, p90) = (percentile(&values, 50.0), percentile(&values, 90.0));
                    (name, p50, p90)
                })
                .collect();
            ModeSummary {
                runs: runs.len(),
                passed: runs.iter().filter(|r| r.outcome == "passed").count(),
                startup_failures: runs.iter().filter(|r| r.startup_failure.is_some()).count(),
                wall_p50: percentile(&walls, 50.0),
                wall_p90: percentile(&walls, 90.0),
                phases,
                mode,
            }
        })
        .collect();
    let mut by_test: BTreeMap<&str, (usize, usize, Vec<f64>)> = BTreeMap::new();
    for test in records.iter().flat_map(|r| &r.tests) {
        let entry = by_test.entry(&test.name).or_default();
        entry.0 += usize::from(test.flaky);
        entry.1 += 1;
        entry.2.push(test.seconds);
    }
    let mut flakiest: Vec<(String, usize, usize)> = by_test
        .iter()
        .filter(|(_, (flaky, _, _))| *flaky > 0)
        .map(|(name, (flaky, ran, _))| (name.to_string(), *flaky, *ran))
        .collect();
    flakiest.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    flakiest.truncate(10);
    let mut slowest: Vec<(String, f64, usize)> = by_test
        .iter()
        .map(|(name, (_, ran, times))| (name.to_string(), percentile(times, 50.0), *ran))
        .collect();
    slowest.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    slowest.truncate(10);
    Summary { modes, flakiest, slowest }
}

fn rate(part: usize, whole: usize) -> String {
    if whole == 0 { "-".into() } else { format!("{:.0}%", 100.0 * part as f64 / whole as f64) }
}

/// The summary as Markdown (the terminal shows the same tables).
pub fn markdown(summary: &Summary, runs: usize, chart: Option<&str>) -> String {
    let mut out = format!("### CI runs\n\n{runs} run(s) in the history.\n\n");
    out.push_str("| mode | runs | pass rate | wall p50 | wall p90 | start-up failures |\n|---|---:|---:|---:|---:|---:|\n");
    for m in &summary.modes {
        out.push_str(&format!(
            "| {} | {} | {} | {:.1} s | {:.1} s | {} |\n",
            m.mode,
            m.runs,
            rate(m.passed, m.runs),
            m.wall_p50,
            m.wall_p90,
            rate(m.startup_failures, m.runs)
        ));
    }
    for m in &summary.modes {
        out.push_str(&format!("\n**{}** phases (p50 / p90, seconds):", m.mode));
        let phases: Vec<String> = m
            .phases
            .iter()
            .map(|(name, p50, p90)| format!(" {name} {p50:.2} / {p90:.2}"))
            .collect();
        out.push_str(&phases.join(","));
        out.push('\n');
    }
    out.push_str("\n**Flakiest tests** (failed, then passed on a retry):\n\n");
    if summary.flakiest.is_empty() {
        out.push_str("none\n");
    } else {
        out.push_str("| test | flaky | runs |\n|---|---:|---:|\n");
        for (name, flaky, ran) in &summary.flakiest {
            out.push_str(&format!("| `{name}` | {flaky} | {ran} |\n"));
        }
    }
    out.push_str("\n**Slowest tests** (p50):\n\n");
    if summary.slowest.is_empty() {
        out.push_str("none recorded\n");
    } else {
        out.push_str("| test | p50 | runs |\n|---|---:|---:|\n");
        for (name, p50, ran) in &summary.slowest {
            out.push_str(&format!("| `{name}` | {p50:.2} s | {ran} |\n"));
        }
    }
    if let Some(chart) = chart {
        out.push_str(&format!("\nChart of the last runs: `{chart}`.\n"));
    }
    out.push('\n');
    out
}

const PHASE_COLORS: &[&str] = &[
    "#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f", "#bab0ac",
];

fn mode_color(mode: &str) -> &'static str {
    match mode {
        "native" => "#1f77b4",
        "docker" => "#d62728",
        _ => "#7f7f7f",
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// An SVG chart of `records` (oldest first): one bar per run, its phases stacked, a
/// colour strip for its mode under it, and each mode's p90 wall time as a dashed line.
pub fn chart(records: &[Record]) -> String {
    let (left, top, bottom, bar, gap) = (56.0, 40.0, 64.0, 14.0, 4.0);
    let plot_height = 260.0;
    // The plot, then the p90 labels, then the legend: nothing overlaps however few runs.
    let plot_right = left + 10.0 + (records.len() as f64 * (bar + gap)).max(320.0);
    let labels_x = plot_right + 6.0;
    let legend_x = plot_right + 130.0;
    let width = legend_x + 120.0;
    let height = top + plot_height + bottom;
    let mut phases: Vec<&str> = Vec::new();
    for phase in records.iter().flat_map(|r| &r.phases) {
        if !phases.contains(&phase.name.as_str()) {
            phases.push(&phase.name);
        }
    }
    let color = |name: &str| {
        PHASE_COLORS[phases.iter().position(|p| *p == name).unwrap_or(0) % PHASE_COLORS.len()]
    };
    let stacked = |r: &Record| r.phases.iter().map(|p| p.seconds).sum::<f64>().max(r.wall_seconds);
    let summary = summarize(records);
    let max = records
        .iter()
        .map(stacked)
        .chain(summary.modes.iter().map(|m| m.wall_p90))
        .fold(1.0_f64, f64::max);
    // A round scale: 1, 2 or 5 times a power of ten per tick, five ticks or so.
    let raw = max / 5.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step =
        [1.0, 2.0, 5.0, 10.0].iter().map(|f| f * magnitude).find(|s| *s >= raw).unwrap_or(raw);
    let scale_max = (max / step).ceil() * step;
    let y = |seconds: f64| top + plot_height - seconds / scale_max * plot_height;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{height:.0}\" viewBox=\"0 0 {width:.0} {height:.0}\" font-family=\"sans-serif\" font-size=\"11\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{left}\" y=\"22\" font-size=\"14\" font-weight=\"bold\">Wall time per run, by phase ({} runs)</text>\n",
        records.len()
    );
    let mut tick = 0.0;
    while tick <= scale_max + 1e-9 {
        let ty = y(tick);
        svg.push_str(&format!(
            "<line x1=\"{left}\" y1=\"{ty:.1}\" x2=\"{plot_right:.0}\" y2=\"{ty:.1}\" stroke=\"#e0e0e0\"/>\n<text x=\"{:.0}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\n",
            left - 6.0,
            ty + 4.0,
            if step < 1.0 { format!("{tick:.1} s") } else { format!("{tick:.0} s") }
        ));
        tick += step;
    }
    for (i, record) in records.iter().enumerate() {
        let x = left + 10.0 + i as f64 * (bar + gap);
        let mut base = 0.0;
        for phase in &record.phases {
            let (y0, y1) = (y(base), y(base + phase.seconds));
            svg.push_str(&format!(
                "<rect x=\"{x:.1}\" y=\"{y1:.1}\" width=\"{bar}\" height=\"{:.1}\" fill=\"{}\"><title>{} {}: {:.2} s</title></rect>\n",
                (y0 - y1).max(0.0),
                color(&phase.name),
                escape(&record.mode),
                escape(&phase.name),
                phase.seconds
            ));
            base += phase.seconds;
        }
        let failed = record.outcome != "passed";
        svg.push_str(&format!(
            "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{bar}\" height=\"6\" fill=\"{}\"><title>{}, {}, {:.1} s</title></rect>\n",
            top + plot_height + 4.0,
            mode_color(&record.mode),
            escape(&record.mode),
            escape(&record.outcome),
            record.wall_seconds
        ));
        if failed {
            svg.push_str(&format!(
                "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"#d62728\" font-weight=\"bold\">x</text>\n",
                x + bar / 2.0,
                top + plot_height + 22.0
            ));
        }
    }
    for mode in &summary.modes {
        let ly = y(mode.wall_p90);
        svg.push_str(&format!(
            "<line x1=\"{left}\" y1=\"{ly:.1}\" x2=\"{plot_right:.0}\" y2=\"{ly:.1}\" stroke=\"{}\" stroke-width=\"1.5\" stroke-dasharray=\"6 4\"/>\n\
             <text x=\"{labels_x:.0}\" y=\"{:.1}\" fill=\"{}\">p90 {} {:.1} s</text>\n",
            mode_color(&mode.mode),
            ly + 4.0,
            mode_color(&mode.mode),
            escape(&mode.mode),
            mode.wall_p90
        ));
    }
    svg.push_str(&format!(
        "<text x=\"{left}\" y=\"{:.0}\">runs, oldest first; strip: mode; x: not passed</text>\n",
        top + plot_height + 40.0
    ));
    for (i, phase) in phases.iter().enumerate() {
        let ly = top + 40.0 + i as f64 * 16.0;
        svg.push_str(&format!(
            "<rect x=\"{legend_x:.0}\" y=\"{:.0}\" width=\"10\" height=\"10\" fill=\"{}\"/><text x=\"{:.0}\" y=\"{:.0}\">{}</text>\n",
            ly - 9.0,
            color(phase),
            legend_x + 14.0,
            ly,
            escape(phase)
        ));
    }
    for (i, mode) in summary.modes.iter().enumerate() {
        let ly = top + 50.0 + (phases.len() + i) as f64 * 16.0;
        svg.push_str(&format!(
            "<rect x=\"{legend_x:.0}\" y=\"{:.0}\" width=\"10\" height=\"4\" fill=\"{}\"/><text x=\"{:.0}\" y=\"{:.0}\">{} (strip)</text>\n",
            ly - 5.0,
            mode_color(&mode.mode),
            legend_x + 14.0,
            ly,
            escape(&mode.mode)
        ));
    }
    svg.push_str("</svg>\n");
    svg
}

/// The history files of `path`: itself, or every *.jsonl below a directory.
fn history_files(path: &Path) -> Vec<PathBuf> {
    if path.is_dir() {
        crate::project::files_below(path, "jsonl")
    } else {
        vec![path.to_path_buf()]
    }
}

fn read_history(path: &Path) -> anyhow::Result<Vec<Record>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => crate::user_error!("cannot read {}: {err}", project::display_path(path)),
    };
    let (records, warnings) = history::parse(&text, &project::display_path(path));
    for warning in warnings {
        eprintln!("warning: {warning}");
    }
    Ok(records)
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let path = history::default_path();
    let mut records = read_history(&path)?;
    if !args.import.is_empty() {
        let mut added = 0;
        for import in &args.import {
            if !import.exists() {
                // A CI job whose runs produced no record passes a directory that is not there.
                eprintln!(
                    "warning: --import {}: no such file or directory; nothing imported from it",
                    import.display()
                );
                continue;
            }
            for file in history_files(import) {
                added += history::merge(&mut records, read_history(&file)?);
            }
        }
        let text: String = records
            .iter()
            .map(|r| serde_json::to_string(r).map(|line| line + "\n"))
            .collect::<Result<_, _>>()?;
        project::write_atomic(&path, text)?;
        eprintln!("xtask: merged {added} new record(s) into {}", project::display_path(&path));
    }
    records.sort_by(|a, b| a.started_unix.total_cmp(&b.started_unix));
    if records.is_empty() {
        println!("no runs recorded yet in {}", project::display_path(&path));
        return Ok(());
    }
    let output = args.output.unwrap_or_else(|| project::xtask_dir().join("ci-report"));
    let shown = &records[records.len().saturating_sub(args.last.max(1))..];
    let chart_path = output.join("runs.svg");
    project::write_atomic(&chart_path, chart(shown))?;
    let summary = summarize(&records);
    let text = markdown(&summary, records.len(), Some(&project::display_path(&chart_path)));
    project::write_atomic(&output.join("report.md"), &text)?;
    print!("{text}");
    github::step_summary(&text)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{Phase, StartupFailure, TestResult};

    fn run(
        id: &str,
        mode: &str,
        at: f64,
        wall: f64,
        outcome: &str,
        tests: &[(&str, f64, bool)],
    ) -> Record {
        Record {
            format: 1,
            id: id.into(),
            mode: mode.into(),
            commit: None,
            started_unix: at,
            wall_seconds: wall,
            phases: vec![
                Phase { name: "build".into(), seconds: wall * 0.5 },
                Phase { name: "tests".into(), seconds: wall * 0.4 },
            ],
            outcome: outcome.into(),
            tests: tests
                .iter()
                .map(|(name, seconds, flaky)| TestResult {
                    name: name.to_string(),
                    outcome: "passed".into(),
                    seconds: *seconds,
                    flaky: *flaky,
                    retried: *flaky,
                })
                .collect(),
            startup_failure: (outcome == "startup-failed").then(|| StartupFailure {
                service: Some("orchestration".into()),
                message: "m".into(),
            }),
        }
    }

    fn history() -> Vec<Record> {
        vec![
            run("1", "native", 1.0, 10.0, "passed", &[("a", 1.0, false), ("b", 0.2, true)]),
            run("2", "native", 2.0, 20.0, "failed", &[("a", 3.0, false), ("b", 0.2, true)]),
            run("3", "docker", 3.0, 40.0, "passed", &[("a", 2.0, false), ("b", 0.3, false)]),
            run("4", "native", 4.0, 30.0, "startup-failed", &[]),
        ]
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let values = [5.0, 1.0, 4.0, 2.0, 3.0];
        assert_eq!(percentile(&values, 50.0), 3.0);
        assert_eq!(percentile(&values, 90.0), 5.0);
        assert_eq!(percentile(&[7.0], 90.0), 7.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
    }

    #[test]
    fn modes_flaky_and_slow_tests_are_summarised() {
        let summary = summarize(&history());
        let native = &summary.modes[0];
        assert_eq!(
            (native.mode.as_str(), native.runs, native.passed, native.startup_failures),
            ("native", 3, 1, 1)
        );
        assert_eq!((native.wall_p50, native.wall_p90), (20.0, 30.0));
        assert_eq!(native.phases[0], ("build".to_string(), 10.0, 15.0));
        assert_eq!(summary.modes[1].mode, "docker");
        assert_eq!(summary.flakiest, vec![("b".to_string(), 2, 3)]);
        assert_eq!(summary.slowest[0], ("a".to_string(), 2.0, 3));
        let text = markdown(&summary, 4, None);
        assert!(text.contains("| native | 3 | 33% | 20.0 s | 30.0 s | 33% |"), "{text}");
        assert!(text.contains("| `b` | 2 | 3 |"), "{text}");
    }

    #[test]
    fn the_chart_has_a_bar_per_run_phase_and_a_p90_line_per_mode() {
        let svg = chart(&history());
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert_eq!(svg.matches("<title>native build:").count(), 3);
        assert_eq!(svg.matches("<title>docker tests:").count(), 1);
        assert!(svg.contains(">p90 native 30.0 s</text>"), "{svg}");
        assert!(svg.contains(">p90 docker 40.0 s</text>"));
        assert_eq!(svg.matches(">x</text>").count(), 2, "two runs did not pass");
        assert!(svg.trim_end().ends_with("</svg>"));
    }
}
