//! The old paths `deps/` still names: it becomes a crate of its own, and this file goes
//! with it. Everything else uses `crate::sys` directly.

pub use crate::sys::command::cargo;
pub use crate::sys::error::Exit;
#[allow(unused_imports, reason = "the tests of deps/ name it")]
pub use crate::sys::error::UserError;
pub use crate::sys::fs::write_atomic;
pub use crate::sys::paths::{root, xtask_dir};
