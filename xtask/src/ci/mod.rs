//! CI over a session of the services: the pipeline of `ci-native` and `ci-docker`
//! ([`pipeline`]: start, end-to-end tests, logs, timings, history, teardown) and its
//! builds ([`build`]: here, or archived once for shards).

pub mod build;
pub mod pipeline;
