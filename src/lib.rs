//! `tasker-core`: the root package of the workspace. It holds the end-to-end tests in
//! `tests/`, which run against services started by `cargo xtask`.
