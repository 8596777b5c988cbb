//! The repository's automation as a library: `cargo xtask <task>` (`main.rs`) parses
//! the command line with [`Cli`] and calls [`cli::run`]; the integration tests use the
//! same modules instead of copies. docs/xtask.md maps the layers.

pub mod build_timings;
pub mod ci;
pub mod cli;
pub mod config;
pub mod doc_commands;
pub mod github;
pub mod github_api;
pub mod layers;
pub mod lint;
pub mod requirements;
pub mod services;
pub mod sys;
pub mod test;
pub mod test_builds;
pub mod timings;

pub use cli::Cli;
// `crate::user_error!` is the `xtask-sys` crate's macro (the one behind `sys::error`).
pub use xtask_sys::user_error;
