//! What every part of xtask may use and none owns: no knowledge of tasks, services or
//! CI. Where things are ([`paths`]), writing files safely ([`fs`]), the error kinds that
//! decide the exit code ([`error`]), the checkout guard ([`checkout`]), the machine
//! ([`host`]), plain command lines ([`command`]) and owned processes ([`process`]),
//! signals ([`interrupts`]), secrets ([`secrets`]), a text diff ([`diff`]) and one
//! median ([`stats`]).

pub mod checkout;
pub mod command;
pub mod diff;
pub mod error;
pub mod fs;
pub mod host;
pub mod interrupts;
pub mod paths;
pub mod process;
pub mod secrets;
pub mod stats;
