//! The command layers over the session API of [`crate::services`]: `services ...`,
//! `ci-native` / `ci-docker` and `docker ...` parse their flags here and call it.

pub mod ci;
pub mod docker;
pub mod services;
