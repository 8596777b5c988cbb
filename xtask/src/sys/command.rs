//! Plain command lines, one way: [`Run`] on `std::process::Command`. A command runs to
//! its end with its standard input closed, and its failure is an error that names it.
//! (An extension of std's `Command` rather than xshell's `cmd!`: some commands need
//! what only std's builder carries, a change of user before exec or Compose's argv.)
//! Children that run long while xtask watches for signals go through
//! [`super::process::run_owned`]; processes that outlive the call are spawned and
//! recorded by the code that owns them.

use std::fmt;
use std::io::Write as _;
use std::process::{Command, ExitStatus, Output, Stdio};

/// A `cargo` command: the one that runs us (`$CARGO`), run from the workspace root.
pub fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.current_dir(super::paths::root());
    cmd
}

/// Running a plain command line.
pub trait Run {
    /// Runs it with its output shown (unless the command says otherwise).
    fn run(&mut self) -> Result<(), Failure>;
    /// Runs it quietly; its standard output.
    fn read(&mut self) -> Result<String, Failure>;
    /// Runs it quietly; all it printed.
    fn capture(&mut self) -> Result<Output, Failure>;
    /// Runs it quietly with `input` on its standard input; all it printed.
    fn feed(&mut self, input: &[u8]) -> Result<Output, Failure>;
    /// Runs it quietly: whether it ran and succeeded. For probes, and for clean-ups whose
    /// failure changes nothing.
    fn succeeds(&mut self) -> bool;
}

impl Run for Command {
    fn run(&mut self) -> Result<(), Failure> {
        let status = self.stdin(Stdio::null()).status().map_err(|err| self.not_started(err))?;
        match status.success() {
            true => Ok(()),
            false => Err(self.failed(status, None)),
        }
    }

    fn read(&mut self) -> Result<String, Failure> {
        let output = self.capture()?;
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    fn capture(&mut self) -> Result<Output, Failure> {
        let output = self.stdin(Stdio::null()).output().map_err(|err| self.not_started(err))?;
        match output.status.success() {
            true => Ok(output),
            false => Err(self.failed(output.status, Some(output))),
        }
    }

    fn feed(&mut self, input: &[u8]) -> Result<Output, Failure> {
        self.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = self.spawn().map_err(|err| self.not_started(err))?;
        // Small inputs fit the pipe, so writing before reading cannot block.
        let written = child.stdin.take().expect("piped").write_all(input);
        let output = child.wait_with_output().map_err(|err| self.not_started(err))?;
        written.map_err(|err| self.not_started(err))?;
        match output.status.success() {
            true => Ok(output),
            false => Err(self.failed(output.status, Some(output))),
        }
    }

    fn succeeds(&mut self) -> bool {
        self.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    }
}

/// A command line that could not run, or ended with a failure.
#[derive(Debug)]
pub struct Failure {
    /// The command line, for messages.
    pub command: String,
    /// How it ended; `None` when it did not start.
    pub status: Option<ExitStatus>,
    /// What it printed, when it ran quietly.
    pub stdout: String,
    /// Its standard error when it ran quietly, or why it did not start.
    pub stderr: String,
}

impl Failure {
    /// The last line of its standard error that says something.
    pub fn last_words(&self) -> &str {
        self.stderr.lines().rev().map(str::trim).find(|l| !l.is_empty()).unwrap_or_default()
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.status {
            None => write!(f, "cannot run `{}`: {}", self.command, self.stderr),
            Some(status) => {
                write!(f, "`{}` failed ({status})", self.command)?;
                match self.last_words() {
                    "" => Ok(()),
                    words => write!(f, ": {words}"),
                }
            }
        }
    }
}

impl std::error::Error for Failure {}

trait Describe {
    fn line(&self) -> String;
    fn not_started(&self, err: std::io::Error) -> Failure;
    fn failed(&self, status: ExitStatus, output: Option<Output>) -> Failure;
}

impl Describe for Command {
    fn line(&self) -> String {
        std::iter::once(self.get_program())
            .chain(self.get_args())
            .map(|part| part.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn not_started(&self, err: std::io::Error) -> Failure {
        let (stdout, stderr) = (String::new(), err.to_string());
        Failure { command: self.line(), status: None, stdout, stderr }
    }

    fn failed(&self, status: ExitStatus, output: Option<Output>) -> Failure {
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        let (stdout, stderr) = match output {
            Some(output) => (text(&output.stdout), text(&output.stderr)),
            None => (String::new(), String::new()),
        };
        Failure { command: self.line(), status: Some(status), stdout, stderr }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_names_the_command_its_status_and_last_words() {
        let out = Command::new("sh")
            .args(["-c", "echo out; echo first >&2; echo why >&2; exit 3"])
            .read();
        let failure = out.unwrap_err();
        assert_eq!(failure.status.and_then(|s| s.code()), Some(3));
        assert_eq!(failure.stdout, "out\n");
        assert_eq!(
            failure.to_string(),
            "`sh -c echo out; echo first >&2; echo why >&2; exit 3` failed (exit status: 3): why"
        );
        let missing = Command::new("/nonexistent/program").arg("x").run().unwrap_err();
        assert!(missing.status.is_none());
        assert!(
            missing.to_string().starts_with("cannot run `/nonexistent/program x`: "),
            "{missing}"
        );
    }

    #[test]
    fn read_feed_and_succeeds_run_real_commands() {
        assert_eq!(Command::new("echo").arg("hi").read().unwrap(), "hi\n");
        let fed = Command::new("cat").feed(b"through stdin").unwrap();
        assert_eq!(fed.stdout, b"through stdin");
        assert!(Command::new("true").succeeds());
        assert!(!Command::new("false").succeeds());
        assert!(!Command::new("/nonexistent/program").succeeds());
        // Standard input is closed: a command that reads it ends at once.
        assert_eq!(Command::new("cat").read().unwrap(), "");
    }
}
