//! Counting tests across steps: a test command's output is passed through unchanged
//! while its summary lines are read (nextest's `Summary [..] N tests run: ..`, libtest's
//! `test result: ..`), so `cargo xtask test` can end with one count over every step.
//! JUnit would not do: nextest leaves skipped tests out of it, and doc tests have none.

use std::io::{BufRead as _, BufReader, Read};
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use anyhow::Context as _;

/// Tests passed, failed and skipped (ignored, or filtered out by a `-E` expression).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub passed: u64,
    pub failed: u64,
    pub skipped: u64,
}

impl std::ops::AddAssign for Counts {
    fn add_assign(&mut self, other: Counts) {
        self.passed += other.passed;
        self.failed += other.failed;
        self.skipped += other.skipped;
    }
}

impl std::fmt::Display for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} passed, {} failed, {} skipped", self.passed, self.failed, self.skipped)
    }
}

/// Removes terminal colour sequences (`ESC [ ... letter`).
fn plain(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Where a summary line came from: nextest's own summary, or a libtest binary's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Nextest,
    Libtest,
}

/// The counts in one summary line, if it is one.
pub fn parse_line(line: &str) -> Option<(Source, Counts)> {
    let line = plain(line);
    let line = line.trim();
    let mut counts = Counts::default();
    // nextest: "Summary [  1.2s] 15 tests run: 14 passed (1 flaky), 1 failed, 3 skipped"
    if line.starts_with("Summary [") {
        let (_, tail) = line.split_once(" run: ")?;
        for part in tail.split(", ") {
            let (number, what) = part.split_once(' ')?;
            let number: u64 = number.parse().ok()?;
            match what.split_whitespace().next()? {
                "passed" => counts.passed += number,
                "failed" | "timed" | "exec" => counts.failed += number,
                "skipped" => counts.skipped += number,
                // "leaky" and the like qualify tests already counted.
                _ => {}
            }
        }
        return Some((Source::Nextest, counts));
    }
    // libtest: "test result: ok. 3 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; ..."
    let tail = line.strip_prefix("test result: ")?;
    let (_, tail) = tail.split_once(". ")?;
    for part in tail.split("; ") {
        let Some((number, what)) = part.split_once(' ') else { continue };
        let Ok(number) = number.parse::<u64>() else { continue };
        match what {
            "passed" => counts.passed += number,
            "failed" => counts.failed += number,
            "ignored" => counts.skipped += number,
            _ => {}
        }
    }
    Some((Source::Libtest, counts))
}

/// The counts of a whole output. Where nextest ran, its summary is the count: the
/// libtest lines it shows are a failed test's captured output, already counted.
#[derive(Debug, Default)]
pub struct Tally {
    nextest: Option<Counts>,
    libtest: Counts,
}

impl Tally {
    pub fn add_line(&mut self, line: &str) {
        match parse_line(line) {
            Some((Source::Nextest, counts)) => *self.nextest.get_or_insert_default() += counts,
            Some((Source::Libtest, counts)) => self.libtest += counts,
            None => {}
        }
    }

    pub fn add(&mut self, other: Tally) {
        if let Some(counts) = other.nextest {
            *self.nextest.get_or_insert_default() += counts;
        }
        self.libtest += other.libtest;
    }

    pub fn counts(&self) -> Counts {
        self.nextest.unwrap_or(self.libtest)
    }
}

/// Copies `from` to `to` line by line, adding up the summary lines it sees.
fn pass_through(from: impl Read, mut to: impl std::io::Write) -> Tally {
    let mut tally = Tally::default();
    let mut reader = BufReader::new(from);
    let mut line = Vec::new();
    while reader.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
        let _ = to.write_all(&line);
        let _ = to.flush();
        tally.add_line(&String::from_utf8_lossy(&line));
        line.clear();
    }
    tally
}

/// Runs a test command owned by this process (see [`crate::sys::process::own`]) with its
/// output passed through, and returns its status and the tests it counted.
pub fn run(command: &mut Command, grace: Duration) -> anyhow::Result<(ExitStatus, Counts)> {
    use std::io::IsTerminal as _;
    // Piped output loses cargo's and nextest's colours; keep them for a person watching.
    if std::io::stderr().is_terminal() && std::env::var_os("CARGO_TERM_COLOR").is_none() {
        command.env("CARGO_TERM_COLOR", "always");
    }
    command.stdout(Stdio::piped()).stderr(Stdio::piped());
    crate::sys::process::own(command, libc::SIGTERM);
    let mut child = command.spawn().context("running cargo")?;
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    let out = std::thread::spawn(move || pass_through(stdout, std::io::stdout()));
    let err = std::thread::spawn(move || pass_through(stderr, std::io::stderr()));
    let status = crate::sys::process::wait_child(&mut child, grace)?;
    let mut tally = out.join().unwrap_or_default();
    tally.add(err.join().unwrap_or_default());
    Ok((status, tally.counts()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(passed: u64, failed: u64, skipped: u64) -> Counts {
        Counts { passed, failed, skipped }
    }

    #[test]
    fn nextest_summaries_in_their_shapes() {
        let cases = [
            ("     Summary [  15.672s] 1 test run: 0 passed, 1 failed, 0 skipped", counts(0, 1, 0)),
            ("     Summary [  53.0s] 211 tests run: 211 passed, 6 skipped", counts(211, 0, 6)),
            (
                "     Summary [ 9.1s] 15 tests run: 14 passed (1 flaky), 1 timed out, 2 skipped",
                counts(14, 1, 2),
            ),
            ("     Summary [   0.000s] 0 tests run: 0 passed, 6 skipped", counts(0, 0, 6)),
            ("     Summary [ 2.0s] 3 tests run: 3 passed (1 slow, 1 leaky)", counts(3, 0, 0)),
        ];
        for (line, expected) in cases {
            assert_eq!(parse_line(line), Some((Source::Nextest, expected)), "{line}");
        }
    }

    #[test]
    fn libtest_results_count_ignored_as_skipped() {
        let line = "test result: ok. 3 passed; 0 failed; 1 ignored; 0 measured; 2 filtered out; finished in 0.51s";
        assert_eq!(parse_line(line), Some((Source::Libtest, counts(3, 0, 1))));
        let line = "test result: FAILED. 1 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.01s";
        assert_eq!(parse_line(line), Some((Source::Libtest, counts(1, 2, 0))));
    }

    #[test]
    fn colours_are_ignored_and_other_lines_are_not_summaries() {
        let coloured = "\u{1b}[32;1m     Summary\u{1b}[0m [   1.0s] 2 tests run: \u{1b}[32;1m2 passed\u{1b}[0m, 0 skipped";
        assert_eq!(parse_line(coloured), Some((Source::Nextest, counts(2, 0, 0))));
        assert_eq!(parse_line("        PASS [   0.1s] xtask tally::tests::x"), None);
        assert_eq!(parse_line("test tally::tests::x ... ok"), None);
    }

    #[test]
    fn output_passes_through_unchanged_while_counted() {
        let text = "running 2 tests\ntest result: ok. 2 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out\n\
                    running 1 test\ntest result: FAILED. 0 passed; 1 failed; 0 ignored; 0 measured; 0 filtered out";
        let mut copy = Vec::new();
        let total = pass_through(text.as_bytes(), &mut copy);
        assert_eq!(String::from_utf8(copy).unwrap(), text);
        assert_eq!(total.counts(), counts(2, 1, 0));
    }

    #[test]
    fn a_failed_tests_captured_libtest_line_is_not_counted_again_under_nextest() {
        // nextest shows a failed test's captured stdout, libtest's result line included.
        let text = "        FAIL [ 131.4s] (1/6) xtask::docker_backend slow\n  stdout ───\n\
                    \x20   test result: FAILED. 0 passed; 1 failed; 0 ignored; 0 measured; 5 filtered out\n\
                    \x20    Summary [ 162.1s] 6 tests run: 5 passed, 1 failed, 0 skipped\n";
        let total = pass_through(text.as_bytes(), std::io::sink());
        assert_eq!(total.counts(), counts(5, 1, 0));
    }
}
