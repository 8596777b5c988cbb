//! Reliability of the native backend, on real processes: a real PostgreSQL, the xtask
//! binary itself, and `fake-service` (a stand-in that serves `/health` like the real
//! services and misbehaves on request). Each test has its own state directory, whose
//! path also tags every process it starts, so "nothing left behind" is checked by
//! looking for that tag in `/proc`.
//!
//! One test binary, one file per thing it proves.

#[path = "../support/mod.rs"]
mod support;

mod bad_input_is_one_line_exit_2;
mod every_run_is_recorded;
mod missing_requirements_are_installed_or_named;
mod sessions_stop_cleanly;
mod signals_leave_nothing_behind;
mod startup_failures_are_reported_at_once;
mod the_database_is_private;
