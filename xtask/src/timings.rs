//! Phase timings of a pipeline: a table for the terminal, JSON for tools, markdown for
//! the CI summary.

use std::time::{Duration, Instant};

#[derive(Debug, Default, Clone)]
pub struct Timings {
    /// In the order phases first ran; a phase that runs again accumulates.
    pub phases: Vec<(&'static str, Duration)>,
}

impl Timings {
    pub fn add(&mut self, phase: &'static str, took: Duration) {
        match self.phases.iter_mut().find(|(name, _)| *name == phase) {
            Some((_, total)) => *total += took,
            None => self.phases.push((phase, took)),
        }
    }

    pub fn time<T>(&mut self, phase: &'static str, body: impl FnOnce() -> T) -> T {
        let started = Instant::now();
        let out = body();
        self.add(phase, started.elapsed());
        out
    }

    pub fn get(&self, phase: &str) -> Duration {
        self.phases.iter().find(|(name, _)| *name == phase).map(|(_, d)| *d).unwrap_or_default()
    }

    pub fn total(&self) -> Duration {
        self.phases.iter().map(|(_, d)| *d).sum()
    }

    pub fn table(&self) -> String {
        let mut out = String::from("phase         seconds\n");
        for (name, took) in &self.phases {
            out.push_str(&format!("{name:<12} {:>8.3}\n", took.as_secs_f64()));
        }
        out.push_str(&format!("{:<12} {:>8.3}\n", "total", self.total().as_secs_f64()));
        out
    }

    pub fn json(&self) -> serde_json::Value {
        let phases: serde_json::Map<String, serde_json::Value> = self
            .phases
            .iter()
            .map(|(name, took)| (name.to_string(), serde_json::json!(took.as_secs_f64())))
            .collect();
        serde_json::json!({ "phases_seconds": phases, "total_seconds": self.total().as_secs_f64() })
    }

    pub fn markdown(&self, title: &str) -> String {
        let mut out = format!("### {title}\n\n| phase | seconds |\n|---|---:|\n");
        for (name, took) in &self.phases {
            out.push_str(&format!("| {name} | {:.3} |\n", took.as_secs_f64()));
        }
        out.push_str(&format!("| **total** | **{:.3}** |\n\n", self.total().as_secs_f64()));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_phases_accumulate_and_render_everywhere() {
        let mut t = Timings::default();
        t.add("start", Duration::from_millis(100));
        t.add("ready", Duration::from_millis(250));
        t.add("start", Duration::from_millis(50));
        assert_eq!(t.get("start"), Duration::from_millis(150));
        assert_eq!(t.total(), Duration::from_millis(400));
        assert!(t.table().contains("start           0.150"), "{}", t.table());
        assert_eq!(t.json()["phases_seconds"]["ready"], 0.25);
        assert!(t.markdown("CI").contains("| ready | 0.250 |"));
    }
}
