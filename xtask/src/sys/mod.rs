//! What every part of xtask may use and none owns: no knowledge of tasks, services or
//! CI. Where things are ([`paths`]), writing files safely ([`fs`]), the error kinds that
//! decide the exit code ([`error`]), the checkout guard ([`checkout`]), the machine
//! ([`host`]), plain command lines ([`command`]) and owned processes ([`process`]),
//! signals ([`interrupts`]), secrets ([`secrets`]), a text diff ([`diff`]) and one
//! median ([`stats`]).
//!
//! `error`, `fs`, `interrupts`, `diff` and `stats` are the `xtask-sys` crate's
//! (`xtask/sys/`), which the `deps` crate uses too; they are re-exported here, so every
//! part of xtask names them as `sys::<module>` like the rest.

pub mod checkout;
pub mod command;
pub mod host;
pub mod paths;
pub mod process;
pub mod secrets;

pub use xtask_sys::{diff, error, fs, interrupts, stats};
