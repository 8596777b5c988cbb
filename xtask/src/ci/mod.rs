//! CI: the pipeline of `ci-native` and `ci-docker` over a session of the services
//! ([`pipeline`]: start, end-to-end tests, logs, timings, history, teardown) and its builds
//! ([`build`]: here, or archived once for shards); the decisions the workflows call
//! ([`mode`], [`scope`], [`compare`], [`result`]); what a run leaves behind and reads back
//! ([`junit`], [`tally`]: test counts, [`history`], [`report`]: `ci-report` and its chart);
//! and the rules the workflow files follow ([`workflows`]).

pub mod build;
pub mod compare;
pub mod history;
pub mod junit;
pub mod mode;
pub mod pipeline;
pub mod report;
pub mod result;
pub mod scope;
pub mod tally;
pub mod workflows;
