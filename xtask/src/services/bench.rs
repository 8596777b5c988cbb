//! `services bench`: what a backend adds around the tests. Up until every service is
//! ready, then down, several times per backend (alternating, so both see the same
//! machine load); the medians per phase.

use std::time::{Duration, Instant};

use super::{Backend, UpOptions, state};
use crate::sys::{interrupts, stats};
use crate::timings::Timings;

/// The phases a bench row reports, in order; `other` is what no phase accounts for.
const BENCH_PHASES: [&str; 5] = ["images", "database", "migrate", "services", "other"];

/// Up, ready, down, N times per backend (alternating); prints the medians. Binaries are
/// not built here, so the numbers are what the backend adds around the tests.
pub fn run(
    runs: usize,
    backends: &[Backend],
    cold: bool,
    options: &UpOptions,
) -> anyhow::Result<()> {
    interrupts::catch_interrupts();
    let _lock = state::StateLock::acquire(&options.state_dir)?;
    let mut backends = backends.to_vec();
    backends.dedup();
    // Per backend: rows of [ready, phases..., teardown].
    let mut rows: Vec<Vec<[f64; 7]>> = vec![Vec::new(); backends.len()];
    'runs: for run in 1..=runs.max(1) {
        for (b, backend) in backends.iter().enumerate() {
            let mut options = UpOptions { backend: *backend, ..options.clone() };
            options.docker.rebuild = cold;
            let mut timings = Timings::default();
            let began = Instant::now();
            let session = super::up(&options, &mut timings)?;
            let ready = began.elapsed();
            let report = session.teardown(Duration::from_secs(5), false);
            let services = timings.get("start") + timings.get("ready");
            let accounted = timings.get("config")
                + timings.get("images")
                + timings.get("database")
                + timings.get("migrate")
                + services;
            let row = [
                ready.as_secs_f64(),
                timings.get("images").as_secs_f64(),
                timings.get("database").as_secs_f64(),
                timings.get("migrate").as_secs_f64(),
                services.as_secs_f64(),
                ready.saturating_sub(accounted).as_secs_f64(),
                report.took.as_secs_f64(),
            ];
            eprintln!(
                "run {run:>3} {:<6}: ready {:.3}s (images {:.3}, database {:.3}, migrate {:.3}, services {:.3}, other {:.3}), teardown {:.3}s",
                backend.name(),
                row[0],
                row[1],
                row[2],
                row[3],
                row[4],
                row[5],
                row[6]
            );
            rows[b].push(row);
            if interrupts::interrupted().is_some() {
                break 'runs;
            }
        }
    }
    let column = |rows: &[[f64; 7]], i: usize| {
        stats::median(&mut rows.iter().map(|r| r[i]).collect::<Vec<_>>())
    };
    let names: Vec<&str> = backends.iter().map(|b| b.name()).collect();
    println!(
        "median over {} run(s) per backend (seconds){}:",
        rows[0].len(),
        if cold && backends.contains(&Backend::Docker) {
            ", docker images rebuilt cold"
        } else {
            ""
        }
    );
    println!("  {:<18}{}", "", names.iter().map(|n| format!("{n:>10}")).collect::<String>());
    let line = |label: &str, i: usize| {
        let cells: String = rows.iter().map(|r| format!("{:>10.3}", column(r, i))).collect();
        println!("  {label:<18}{cells}");
    };
    line("up -> all ready", 0);
    for (i, phase) in BENCH_PHASES.iter().enumerate() {
        line(&format!("  {phase}"), i + 1);
    }
    line("teardown", 6);
    if backends.len() == 2 {
        let overhead = |r: &[[f64; 7]]| column(r, 0) + column(r, 6);
        let (a, b) = (overhead(&rows[0]), overhead(&rows[1]));
        if a > 0.0 {
            println!("  {:<18}{:>10.1}x", format!("{} / {}", names[1], names[0]), b / a);
        }
    }
    Ok(())
}
