//! The error kinds that decide the exit code: a [`UserError`] (exit 2, one line), an
//! [`Exit`] (a failure the task already reported), and every other error (exit 1, with
//! its cause chain).

use std::fmt;

/// A mistake in the user's input (flags, files, environment): printed as one line and
/// exits with code 2. Internal failures stay plain `anyhow` errors and exit 1.
#[derive(Debug)]
pub struct UserError(pub String);

impl fmt::Display for UserError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UserError {}

/// Returns early from a task with a [`UserError`].
#[macro_export]
macro_rules! user_error {
    ($($arg:tt)*) => {
        return Err(anyhow::Error::new($crate::error::UserError(format!($($arg)*))))
    };
}

/// A task that already reported why it failed and only needs to exit with `code`
/// (e.g. `--check` found a stale file: exit 1 after printing the diff).
#[derive(Debug)]
pub struct Exit(pub u8);

impl fmt::Display for Exit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "exit status {}", self.0)
    }
}

impl std::error::Error for Exit {}

impl Exit {
    /// The status to end with after a child failed: its exit code, or 1 when a signal
    /// ended it.
    pub fn of(status: std::process::ExitStatus) -> Exit {
        Exit(status.code().unwrap_or(1).clamp(1, 255) as u8)
    }
}
