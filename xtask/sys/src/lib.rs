//! The part of xtask's `sys` layer that the `deps` crate shares with it: no knowledge of
//! tasks, services, CI or of where the repository is. The error kinds that decide the exit
//! code ([`error`]), writing files safely ([`fs`]), signals ([`interrupts`]), a text diff
//! ([`diff`]) and one median ([`stats`]). xtask re-exports each module as
//! `xtask::sys::<module>`, beside the parts of `sys` that know where the repository is.

pub mod diff;
pub mod error;
pub mod fs;
pub mod interrupts;
pub mod stats;
