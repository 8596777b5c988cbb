//! `cargo xtask ci-report`: what the run history says, counted in runs (a CI run's
//! shards are one run: [`history::runs`]). Per mode: runs, pass rate, whole-run wall time
//! (p50, p90), start-up failures and each phase's (p50, p90) per shard; which modes
//! pull-request runs used; the flakiest and the slowest tests; and a picture, an SVG
//! chart of every run's phases stacked, by mode, with each mode's p90 line. Summarising
//! and drawing are pure; the task reads and writes files.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use crate::ci::history::{self, MergedRun, Record};
use crate::github;
use crate::sys::{fs, paths};

#[derive(clap::Args)]
#[command(after_help = "\
Reads target/xtask/history.jsonl (or $TASKER_CI_HISTORY), where every ci-native, ci-docker
and test run adds a line (on GitHub Actions with its workflow run, attempt and shard: the
shards of one run count as one run). Writes target/xtask/ci-report/report.md and runs.svg
(a chart of the last runs) and, on GitHub, the step summary. With --import or
--keep-runs the history is rewritten (atomically) keeping the newest workflow runs.

Examples:
  cargo xtask ci-report
  cargo xtask ci-report --import target/history     merge the records of CI artifacts first
  cargo xtask ci-report --keep-runs 200             trim the history to the newest 200 runs
  cargo xtask ci-report --last 20")]
pub struct Args {
    /// History files (or directories searched for *.jsonl) whose records are merged into
    /// the history first; records already there are skipped
    #[arg(long, value_name = "PATH", num_args = 1..)]
    import: Vec<PathBuf>,
    /// How many of the latest runs the chart shows
    #[arg(long, value_name = "N", default_value_t = 50)]
    last: usize,
    /// Keep the newest N workflow runs (every attempt, mode and shard of one; a local run
    /// counts as one) when the history is rewritten [default with --import: 500]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    keep_runs: Option<u32>,
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

/// One mode's numbers, over its runs (a CI run's shards merged: [`history::runs`]).
#[derive(Debug, PartialEq)]
pub struct ModeSummary {
    pub mode: String,
    pub runs: usize,
    /// Runs that were not interrupted (cancelled, timed out): what the rates count.
    pub finished: usize,
    pub passed: usize,
    pub startup_failures: usize,
    /// Whole-run wall time (p50, p90) of the finished runs that have all their shards;
    /// none when no run qualifies.
    pub wall: Option<(f64, f64)>,
    /// Each phase's p50 and p90 over the mode's records (one per shard: every shard
    /// runs every phase), in the order the phases first ran.
    pub phases: Vec<(String, f64, f64)>,
}

/// Which modes pull-request workflow runs used (the seed's adoption figure). A re-run
/// is not another run: a run counts the modes of all its attempts.
#[derive(Debug, Default, PartialEq)]
pub struct Adoption {
    /// Pull-request workflow runs that ran the end-to-end tests.
    pub runs: usize,
    /// The distinct pull requests they belong to.
    pub pull_requests: usize,
    pub native_only: usize,
    pub docker_only: usize,
    pub both: usize,
    /// Pull-request workflow runs with no end-to-end tests (a documentation-only change).
    pub without: usize,
}

#[derive(Debug, PartialEq)]
pub struct Summary {
    pub runs: usize,
    pub records: usize,
    /// Workflow runs per event (`pull_request`, `push`...), then `local` runs.
    pub events: Vec<(String, usize)>,
    pub modes: Vec<ModeSummary>,
    pub adoption: Adoption,
    /// Test, times it was flaky, runs it ran in.
    pub flakiest: Vec<(String, usize, usize)>,
    /// Test, p50 seconds, runs it ran in.
    pub slowest: Vec<(String, f64, usize)>,
}

/// Each distinct item once, in the order first seen.
fn first_seen<'a>(items: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut seen: Vec<&str> = Vec::new();
    for item in items {
        if !seen.contains(&item) {
            seen.push(item);
        }
    }
    seen
}

/// The whole-run wall time (p50, p90) of `runs` that finished with all their shards.
fn wall_percentiles<'a>(runs: impl Iterator<Item = &'a MergedRun>) -> Option<(f64, f64)> {
    let walls: Vec<f64> =
        runs.filter(|r| r.complete && r.outcome != "interrupted").map(|r| r.wall_seconds).collect();
    (!walls.is_empty()).then(|| (percentile(&walls, 50.0), percentile(&walls, 90.0)))
}

pub fn summarize(records: &[Record]) -> Summary {
    let runs = history::runs(records);
    let modes = first_seen(runs.iter().map(|r| r.mode.as_str()))
        .into_iter()
        .map(|mode| {
            let of_mode: Vec<&MergedRun> = runs.iter().filter(|r| r.mode == mode).collect();
            let finished: Vec<&&MergedRun> =
                of_mode.iter().filter(|r| r.outcome != "interrupted").collect();
            let shards: Vec<&Record> = records.iter().filter(|r| r.mode == mode).collect();
            let phase_names =
                first_seen(shards.iter().flat_map(|r| &r.phases).map(|p| p.name.as_str()));
            let phases = phase_names
                .into_iter()
                .map(|name| {
                    let values: Vec<f64> = shards
                        .iter()
                        .filter_map(|r| r.phases.iter().find(|p| p.name == name).map(|p| p.seconds))
                        .collect();
                    (name.to_string(), percentile(&values, 50.0), percentile(&values, 90.0))
                })
                .collect();
            ModeSummary {
                mode: mode.to_string(),
                runs: of_mode.len(),
                finished: finished.len(),
                passed: finished.iter().filter(|r| r.outcome == "passed").count(),
                startup_failures: finished.iter().filter(|r| r.startup_failure).count(),
                wall: wall_percentiles(of_mode.iter().copied()),
                phases,
            }
        })
        .collect();
    let mut by_test: BTreeMap<&str, (usize, usize, Vec<f64>)> = BTreeMap::new();
    for test in runs.iter().flat_map(|r| &r.tests) {
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
    Summary {
        runs: runs.len(),
        records: records.len(),
        events: events(&runs),
        modes,
        adoption: adoption(&runs),
        flakiest,
        slowest,
    }
}

/// Workflow runs per event, in the order first seen, then the local runs.
fn events(runs: &[MergedRun]) -> Vec<(String, usize)> {
    let mut seen: HashSet<u64> = HashSet::new();
    let mut events: Vec<(String, usize)> = Vec::new();
    for run in runs {
        let counted = match run.workflow {
            Some((id, _)) => seen.insert(id),
            None => true,
        };
        if !counted {
            continue;
        }
        match events.iter_mut().find(|(event, _)| *event == run.event) {
            Some((_, n)) => *n += 1,
            None => events.push((run.event.clone(), 1)),
        }
    }
    events.sort_by_key(|(event, _)| event == "local");
    events
}

fn adoption(runs: &[MergedRun]) -> Adoption {
    // Per workflow run: the pull request, and whether it ran each mode.
    let mut by_run: BTreeMap<u64, (Option<u64>, bool, bool)> = BTreeMap::new();
    for run in runs.iter().filter(|r| r.event == "pull_request") {
        let Some((id, _)) = run.workflow else { continue };
        let entry = by_run.entry(id).or_insert((run.pull_request, false, false));
        entry.1 |= run.mode == "native";
        entry.2 |= run.mode == "docker";
    }
    let mut adoption = Adoption::default();
    let mut pull_requests: HashSet<Option<u64>> = HashSet::new();
    for (pull_request, native, docker) in by_run.into_values() {
        match (native, docker) {
            (false, false) => {
                adoption.without += 1;
                continue;
            }
            (true, false) => adoption.native_only += 1,
            (false, true) => adoption.docker_only += 1,
            (true, true) => adoption.both += 1,
        }
        adoption.runs += 1;
        pull_requests.insert(pull_request);
    }
    adoption.pull_requests = pull_requests.len();
    adoption
}

fn rate(part: usize, whole: usize) -> String {
    if whole == 0 { "-".into() } else { format!("{:.0}%", 100.0 * part as f64 / whole as f64) }
}

/// The summary as Markdown (the terminal shows the same tables).
pub fn markdown(summary: &Summary, chart: Option<&str>) -> String {
    let mut out = format!(
        "### CI runs\n\n{} run(s) from {} record(s) (a CI run's shards are one run; a re-run is another).",
        summary.runs, summary.records
    );
    let workflow_runs: Vec<String> = summary
        .events
        .iter()
        .filter(|(event, _)| event != "local")
        .map(|(event, n)| format!("{event} {n}"))
        .collect();
    if !workflow_runs.is_empty() {
        out.push_str(&format!(" Workflow runs by event: {}.", workflow_runs.join(", ")));
    }
    if let Some((_, n)) = summary.events.iter().find(|(event, _)| event == "local") {
        out.push_str(&format!(" Local runs: {n}."));
    }
    out.push_str("\n\n");
    out.push_str("| mode | runs | pass rate | wall p50 | wall p90 | start-up failures |\n|---|---:|---:|---:|---:|---:|\n");
    for m in &summary.modes {
        let (p50, p90) = match m.wall {
            Some((p50, p90)) => (format!("{p50:.1} s"), format!("{p90:.1} s")),
            None => ("-".into(), "-".into()),
        };
        out.push_str(&format!(
            "| {} | {} | {} | {p50} | {p90} | {} |\n",
            m.mode,
            m.runs,
            rate(m.passed, m.finished),
            rate(m.startup_failures, m.finished)
        ));
    }
    out.push_str(
        "\nWall time: from a run's first shard start to its last shard end, over the runs that have all their shards.",
    );
    let interrupted: Vec<String> = summary
        .modes
        .iter()
        .filter(|m| m.finished < m.runs)
        .map(|m| format!("{} {}", m.mode, m.runs - m.finished))
        .collect();
    if !interrupted.is_empty() {
        out.push_str(&format!(
            " Interrupted runs (cancelled or timed out), in `runs` but in no rate or time: {}.",
            interrupted.join(", ")
        ));
    }
    out.push('\n');
    let a = &summary.adoption;
    if a.runs + a.without == 0 {
        out.push_str("\n**Pull-request runs by mode**: none in this history.\n");
    } else {
        out.push_str(&format!(
            "\n**Pull-request runs by mode** ({} workflow run(s) of {} pull request(s) ran the end-to-end tests; a re-run is not another run):\n\n",
            a.runs, a.pull_requests
        ));
        out.push_str("| native only | docker only | both modes | no end-to-end tests |\n|---:|---:|---:|---:|\n");
        out.push_str(&format!(
            "| {} ({}) | {} ({}) | {} ({}) | {} |\n",
            a.native_only,
            rate(a.native_only, a.runs),
            a.docker_only,
            rate(a.docker_only, a.runs),
            a.both,
            rate(a.both, a.runs),
            a.without
        ));
    }
    for m in &summary.modes {
        out.push_str(&format!("\n**{}** phases per shard (p50 / p90, seconds):", m.mode));
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

/// An SVG chart of `runs` (oldest first): one bar per run, the phases of its slowest
/// shard stacked, a colour strip for its mode under it, and each mode's p90 whole-run
/// wall time as a dashed line.
pub fn chart(runs: &[MergedRun]) -> String {
    let (left, top, bottom, bar, gap) = (56.0, 40.0, 64.0, 14.0, 4.0);
    let plot_height = 260.0;
    // The plot, then the p90 labels, then the legend: nothing overlaps however few runs.
    let plot_right = left + 10.0 + (runs.len() as f64 * (bar + gap)).max(320.0);
    let labels_x = plot_right + 6.0;
    let legend_x = plot_right + 130.0;
    let width = legend_x + 120.0;
    let height = top + plot_height + bottom;
    let phases = first_seen(runs.iter().flat_map(|r| &r.phases).map(|p| p.name.as_str()));
    let color = |name: &str| {
        PHASE_COLORS[phases.iter().position(|p| *p == name).unwrap_or(0) % PHASE_COLORS.len()]
    };
    let stacked =
        |r: &MergedRun| r.phases.iter().map(|p| p.seconds).sum::<f64>().max(r.wall_seconds);
    let p90s: Vec<(&str, f64)> = first_seen(runs.iter().map(|r| r.mode.as_str()))
        .into_iter()
        .filter_map(|mode| {
            let (_, p90) = wall_percentiles(runs.iter().filter(|r| r.mode == mode))?;
            Some((mode, p90))
        })
        .collect();
    let max =
        runs.iter().map(stacked).chain(p90s.iter().map(|(_, p90)| *p90)).fold(1.0_f64, f64::max);
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
        runs.len()
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
    for (i, record) in runs.iter().enumerate() {
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
    for (mode, p90) in &p90s {
        let ly = y(*p90);
        svg.push_str(&format!(
            "<line x1=\"{left}\" y1=\"{ly:.1}\" x2=\"{plot_right:.0}\" y2=\"{ly:.1}\" stroke=\"{}\" stroke-width=\"1.5\" stroke-dasharray=\"6 4\"/>\n\
             <text x=\"{labels_x:.0}\" y=\"{:.1}\" fill=\"{}\">p90 {} {:.1} s</text>\n",
            mode_color(mode),
            ly + 4.0,
            mode_color(mode),
            escape(mode),
            p90
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
    for (i, mode) in first_seen(runs.iter().map(|r| r.mode.as_str())).into_iter().enumerate() {
        let ly = top + 50.0 + (phases.len() + i) as f64 * 16.0;
        svg.push_str(&format!(
            "<rect x=\"{legend_x:.0}\" y=\"{:.0}\" width=\"10\" height=\"4\" fill=\"{}\"/><text x=\"{:.0}\" y=\"{:.0}\">{} (strip)</text>\n",
            ly - 5.0,
            mode_color(mode),
            legend_x + 14.0,
            ly,
            escape(mode)
        ));
    }
    svg.push_str("</svg>\n");
    svg
}

/// The history files of `path`: itself, or every *.jsonl below a directory.
fn history_files(path: &Path) -> Vec<PathBuf> {
    if path.is_dir() {
        crate::sys::fs::files_below(path, "jsonl")
    } else {
        vec![path.to_path_buf()]
    }
}

fn read_history(path: &Path) -> anyhow::Result<Vec<Record>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(err) => crate::user_error!("cannot read {}: {err}", paths::display_path(path)),
    };
    let (records, warnings) = history::parse(&text, &paths::display_path(path));
    for warning in warnings {
        eprintln!("warning: {warning}");
    }
    Ok(records)
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let path = history::default_path();
    let records = match (args.import.is_empty(), args.keep_runs) {
        (true, None) => read_history(&path)?,
        (_, keep) => {
            let keep = keep.map_or(history::KEEP_RUNS, |n| n as usize);
            import(&path, &args.import, keep)?
        }
    };
    if records.is_empty() {
        println!("no runs recorded yet in {}", paths::display_path(&path));
        return Ok(());
    }
    let output = args.output.unwrap_or_else(|| paths::xtask_dir().join("ci-report"));
    let runs = history::runs(&records);
    let shown = &runs[runs.len().saturating_sub(args.last.max(1))..];
    let chart_path = output.join("runs.svg");
    fs::write_atomic(&chart_path, chart(shown))?;
    let summary = summarize(&records);
    let text = markdown(&summary, Some(&paths::display_path(&chart_path)));
    fs::write_atomic(&output.join("report.md"), &text)?;
    print!("{text}");
    github::step_summary(&text)?;
    Ok(())
}

/// Merges the records of `imports` into the history at `path` and keeps its newest
/// `keep` workflow runs, in one atomic rewrite; returns the records kept, oldest first.
fn import(path: &Path, imports: &[PathBuf], keep: usize) -> anyhow::Result<Vec<Record>> {
    let mut more = Vec::new();
    for import in imports {
        if !import.exists() {
            // A CI job whose runs produced no record passes a directory that is not there.
            eprintln!(
                "warning: --import {}: no such file or directory; nothing imported from it",
                import.display()
            );
            continue;
        }
        for file in history_files(import) {
            more.extend(read_history(&file)?);
        }
    }
    let (mut kept, mut added, mut dropped) = (Vec::new(), 0, 0);
    history::rewrite(path, |text| {
        let (mut records, warnings) = history::parse(text, &paths::display_path(path));
        for warning in warnings {
            eprintln!("warning: {warning} (left out of the rewritten history)");
        }
        added = history::merge(&mut records, more);
        dropped = history::keep_newest(&mut records, keep);
        let text: String = records
            .iter()
            .map(|r| serde_json::to_string(r).map(|line| line + "\n"))
            .collect::<Result<_, _>>()?;
        kept = records;
        Ok(text)
    })?;
    let trimmed = match dropped {
        0 => String::new(),
        n => format!("; dropped {n} record(s) of runs older than the newest {keep}"),
    };
    eprintln!("xtask: merged {added} new record(s) into {}{trimmed}", paths::display_path(path));
    Ok(kept)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ci::history::fixtures::{FORMAT_1_LINE, LOCAL, Shard};
    use crate::ci::junit::Outcome::{Passed, Skipped};

    #[test]
    fn percentiles_are_nearest_rank() {
        let values = [5.0, 1.0, 4.0, 2.0, 3.0];
        assert_eq!(percentile(&values, 50.0), 3.0);
        assert_eq!(percentile(&values, 90.0), 5.0);
        assert_eq!(percentile(&[7.0], 90.0), 7.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
    }

    /// A shard of workflow run `run`, attempt `attempt`, of pull request 40 + run % 10.
    fn pr<'a>(
        run: u64,
        attempt: u32,
        mode: &'a str,
        partition: &'a str,
        at: f64,
        wall: f64,
        outcome: &'a str,
    ) -> Shard<'a> {
        Shard {
            run: Some((run, attempt)),
            event: "pull_request",
            pull_request: Some(40 + run % 10),
            mode,
            partition: Some(partition),
            started: at,
            wall,
            outcome,
            tests: &[],
        }
    }

    /// Weeks of CI as the pipelines record it: sharded pull-request runs in one mode
    /// and in both, a re-run of a failed shard, a documentation-only pull request, a push
    /// and a nightly run on main, a cancelled shard, and a local run.
    fn history() -> Vec<Record> {
        let unit = |run: u64, event: &'static str, at: f64| Shard {
            run: Some((run, 1)),
            event,
            pull_request: (event == "pull_request").then_some(40 + run % 10),
            mode: "test",
            partition: None,
            started: at,
            wall: 200.0,
            ..LOCAL
        };
        let main = |run: u64, event: &'static str, shard: Shard<'static>| Shard {
            run: Some((run, 1)),
            event,
            pull_request: None,
            ..shard
        };
        [
            // Pull request 41: native, two shards; a test reported by both shards.
            Shard {
                tests: &[
                    ("e2e::a", Passed, 2.0, false),
                    ("e2e::b", Passed, 1.0, true),
                    ("e2e::shared", Skipped, 0.0, false),
                ],
                ..pr(11, 1, "native", "hash:1/2", 1000.0, 300.0, "passed")
            },
            Shard {
                tests: &[("e2e::c", Passed, 4.0, false), ("e2e::shared", Passed, 0.5, false)],
                ..pr(11, 1, "native", "hash:2/2", 1010.0, 320.0, "passed")
            },
            // Pull request 42: shard 1 fails, and passes when re-run alone (attempt 2).
            pr(12, 1, "native", "hash:1/2", 2000.0, 400.0, "failed"),
            pr(12, 1, "native", "hash:2/2", 2005.0, 350.0, "passed"),
            pr(12, 2, "native", "hash:1/2", 3000.0, 380.0, "passed"),
            // Pull request 42 again, with run-docker and parallel validation: both modes.
            Shard {
                tests: &[("e2e::a", Passed, 3.0, false), ("e2e::b", Passed, 1.2, false)],
                pull_request: Some(42),
                ..pr(13, 1, "native", "hash:1/2", 4000.0, 310.0, "passed")
            },
            Shard {
                tests: &[("e2e::c", Passed, 5.0, false), ("e2e::shared", Passed, 0.7, false)],
                pull_request: Some(42),
                ..pr(13, 1, "native", "hash:2/2", 4002.0, 300.0, "passed")
            },
            Shard {
                tests: &[("e2e::a", Passed, 6.0, false), ("e2e::b", Passed, 2.0, true)],
                pull_request: Some(42),
                ..pr(13, 1, "docker", "hash:1/2", 4001.0, 700.0, "passed")
            },
            Shard {
                pull_request: Some(42),
                ..pr(13, 1, "docker", "hash:2/2", 4003.0, 60.0, "startup-failed")
            },
            // Pull request 43 changes documentation only: unit tests, no end-to-end tests.
            unit(14, "pull_request", 5000.0),
            // A push to main, and the nightly run (both modes; a native shard cancelled).
            unit(15, "push", 5990.0),
            main(15, "push", pr(0, 0, "native", "hash:1/2", 6000.0, 290.0, "passed")),
            main(15, "push", pr(0, 0, "native", "hash:2/2", 6001.0, 295.0, "passed")),
            main(16, "schedule", pr(0, 0, "native", "hash:1/2", 7000.0, 280.0, "passed")),
            main(16, "schedule", pr(0, 0, "native", "hash:2/2", 7001.0, 90.0, "interrupted")),
            main(16, "schedule", pr(0, 0, "docker", "hash:1/2", 7002.0, 650.0, "passed")),
            main(16, "schedule", pr(0, 0, "docker", "hash:2/2", 7004.0, 640.0, "passed")),
            // A developer's own run.
            Shard { started: 8000.0, wall: 60.0, ..LOCAL },
        ]
        .iter()
        .map(Shard::record)
        .collect()
    }

    #[test]
    fn sharded_runs_count_as_runs_and_the_report_shows_the_seeds_figures() {
        let summary = summarize(&history());
        assert_eq!((summary.runs, summary.records), (11, 18));
        let modes: Vec<(&str, usize, usize, usize, usize)> = summary
            .modes
            .iter()
            .map(|m| (m.mode.as_str(), m.runs, m.finished, m.passed, m.startup_failures))
            .collect();
        // native: runs 11, 12 (attempt 1 failed, attempt 2 passed), 13, 15, 16 (cancelled),
        // and the local one.
        assert_eq!(modes, [("native", 7, 6, 5, 0), ("docker", 2, 2, 1, 1), ("test", 2, 2, 2, 0)]);
        // Whole runs that finished with all their shards: 330, 400, 310, 296 and 60 s
        // natively (the re-run of one shard and the cancelled run left out).
        assert_eq!(summary.modes[0].wall, Some((310.0, 400.0)));
        assert_eq!(summary.modes[1].wall, Some((650.0, 700.0)));
        assert_eq!(
            summary.events,
            [
                ("pull_request".to_string(), 4),
                ("push".into(), 1),
                ("schedule".into(), 1),
                ("local".into(), 1)
            ]
        );
        assert_eq!(
            summary.adoption,
            Adoption {
                runs: 3,
                pull_requests: 2,
                native_only: 2,
                docker_only: 0,
                both: 1,
                without: 1
            }
        );
        // A test two shards of one run report is one test of that run.
        assert_eq!(summary.flakiest, vec![("e2e::b".to_string(), 2, 3)]);
        assert_eq!(summary.slowest[0], ("e2e::c".to_string(), 4.0, 2));
        assert!(
            summary.slowest.contains(&("e2e::shared".to_string(), 0.5, 2)),
            "{:?}",
            summary.slowest
        );
        let text = markdown(&summary, None);
        for line in [
            "11 run(s) from 18 record(s) (a CI run's shards are one run; a re-run is another).",
            " Workflow runs by event: pull_request 4, push 1, schedule 1. Local runs: 1.\n",
            "| native | 7 | 83% | 310.0 s | 400.0 s | 0% |",
            "| docker | 2 | 50% | 650.0 s | 700.0 s | 50% |",
            "Interrupted runs (cancelled or timed out), in `runs` but in no rate or time: native 1.",
            "(3 workflow run(s) of 2 pull request(s) ran the end-to-end tests",
            "| 2 (67%) | 0 (0%) | 1 (33%) | 1 |",
            "| `e2e::b` | 2 | 3 |",
        ] {
            assert!(text.contains(line), "no `{line}` in:\n{text}");
        }
    }

    #[test]
    fn a_mode_with_no_whole_run_to_time_shows_no_wall_time() {
        let records = [pr(5, 2, "docker", "hash:2/2", 10.0, 100.0, "passed").record()];
        let summary = summarize(&records);
        assert_eq!(summary.modes[0].wall, None);
        let text = markdown(&summary, None);
        assert!(text.contains("| docker | 1 | 100% | - | - | 0% |"), "{text}");
        // A pull-request run of one mode: all of them.
        assert!(text.contains("| 0 (0%) | 1 (100%) | 0 (0%) | 0 |"), "{text}");
        let local = summarize(&[LOCAL.record()]);
        let text = markdown(&local, None);
        assert!(text.contains("1 run(s) from 1 record(s)"), "{text}");
        assert!(text.contains(" Local runs: 1.\n") && !text.contains("Workflow runs"), "{text}");
        assert!(text.contains("**Pull-request runs by mode**: none in this history."), "{text}");
    }

    #[test]
    fn the_chart_has_a_bar_per_run_phase_and_a_p90_line_per_mode() {
        let runs = history::runs(&history());
        let svg = chart(&runs);
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.contains("Wall time per run, by phase (11 runs)"), "{svg}");
        assert_eq!(svg.matches("<title>native build:").count(), 7);
        assert_eq!(svg.matches("<title>docker tests:").count(), 2);
        assert!(svg.contains(">p90 native 400.0 s</text>"), "{svg}");
        assert!(svg.contains(">p90 docker 700.0 s</text>"));
        assert_eq!(svg.matches(">x</text>").count(), 3, "runs 12 and 16 native, 13 docker");
        assert!(svg.trim_end().ends_with("</svg>"));
    }

    #[test]
    fn an_import_merges_artifacts_keeps_the_newest_runs_and_rewrites_the_file_atomically() {
        let dir =
            std::env::temp_dir().join(format!("xtask-ci-report-import-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("history.jsonl");
        // The history so far: a record of the old format, a torn line, and run 11.
        let records = history();
        let mut text = format!("{FORMAT_1_LINE}\n{{\"format\":1,\"id\":\"torn\n");
        for record in &records[..2] {
            text += &(serde_json::to_string(record).unwrap() + "\n");
        }
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(&path, text).unwrap();
        // This run's artifacts: one history file per job, as each job's pipeline wrote it.
        let artifacts = dir.join("artifacts");
        for (i, record) in records.iter().enumerate() {
            let job = artifacts.join(format!("history-{}-{i}", record.mode));
            history::append(&job.join("history.jsonl"), record).unwrap();
        }
        let kept = import(&path, std::slice::from_ref(&artifacts), 500).unwrap();
        assert_eq!(kept.len(), 19, "18 records and the old one, each once");
        let (read, warnings) = history::parse(&std::fs::read_to_string(&path).unwrap(), "h");
        assert_eq!((read, warnings.len()), (kept.clone(), 0), "the torn line is gone");
        assert_eq!(summarize(&kept).runs, 12);
        // Again: nothing new. Then a window of three runs: the newest are the old-format
        // record (a local run, the latest start), the local run and the nightly run 16
        // with every shard of it.
        assert_eq!(import(&path, std::slice::from_ref(&artifacts), 500).unwrap(), kept);
        let kept = import(&path, &[], 3).unwrap();
        let runs = history::runs(&kept);
        let runs: Vec<(Option<(u64, u32)>, &str)> =
            runs.iter().map(|r| (r.workflow, r.mode.as_str())).collect();
        assert_eq!(
            runs,
            [
                (Some((16, 1)), "native"),
                (Some((16, 1)), "docker"),
                (None, "native"),
                (None, "native")
            ]
        );
        assert_eq!(kept.len(), 6, "nightly 16: 4 shards, two local records");
        let left = std::fs::read_dir(&dir)
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with('.'));
        assert_eq!(left.count(), 0, "a temporary file was left behind");
        std::fs::remove_dir_all(dir).unwrap();
    }
}
