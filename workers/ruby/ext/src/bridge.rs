//! The hand-over between the async worker runtime and the Ruby thread that runs handlers.
//!
//! A handler registered on the Rust side calls [`Bridge::dispatch`]: the step goes into a
//! channel that Ruby drains with `next_step`, and the handler awaits the outcome Ruby
//! delivers with `complete_step`. Nothing here knows about queues or the database, so the
//! same bridge serves the real worker and the synthetic feeder used by the soak benchmark.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

/// What a handler returns to the worker runtime: the step result, or an error message.
pub type StepResult = Result<Value, String>;

/// A step waiting for Ruby to take it.
#[derive(Debug)]
pub struct StepRequest {
    pub step_id: u64,
    pub handler: String,
    pub payload: Value,
}

impl StepRequest {
    /// The JSON document `next_step` hands to Ruby.
    pub fn to_json(&self) -> Value {
        json!({
            "type": "step",
            "step_id": self.step_id.to_string(),
            "handler": self.handler,
            "payload": self.payload,
        })
    }
}

/// How Ruby reports a step: `{"status":"success","result":...}` or
/// `{"status":"error","message":"...","error_class":"..."}`.
#[derive(Debug, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case", deny_unknown_fields)]
pub enum Outcome {
    Success {
        result: Value,
    },
    Error {
        message: String,
        #[serde(default)]
        error_class: Option<String>,
    },
}

impl Outcome {
    pub fn parse(text: &str) -> Result<Self, String> {
        serde_json::from_str(text).map_err(|err| {
            format!(
                "invalid step outcome JSON ({err}): expected {{\"status\":\"success\",\"result\":...}} \
                 or {{\"status\":\"error\",\"message\":\"...\"}}"
            )
        })
    }

    fn into_result(self) -> StepResult {
        match self {
            Outcome::Success { result } => Ok(result),
            Outcome::Error { message, error_class: Some(class) } => {
                Err(format!("{class}: {message}"))
            }
            Outcome::Error { message, .. } => Err(message),
        }
    }
}

/// Counters reported by `stats`; the soak benchmark checks them against its own count.
#[derive(Debug, Default)]
pub struct Counters {
    pub dispatched: AtomicU64,
    pub succeeded: AtomicU64,
    pub failed: AtomicU64,
}

/// What `next_step` can receive: a step, or the news that no step will come any more.
#[derive(Debug)]
pub enum Event {
    Step(StepRequest),
    Ended(String),
}

pub struct Bridge {
    steps: mpsc::UnboundedSender<Event>,
    pending: Mutex<HashMap<u64, oneshot::Sender<StepResult>>>,
    next_id: AtomicU64,
    pub counters: Counters,
}

/// The receiving end, owned by the FFI handle and read by `next_step`.
pub type StepReceiver = mpsc::UnboundedReceiver<Event>;

impl Bridge {
    pub fn new() -> (Self, StepReceiver) {
        let (steps, receiver) = mpsc::unbounded_channel();
        let bridge = Bridge {
            steps,
            pending: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            counters: Counters::default(),
        };
        (bridge, receiver)
    }

    /// Hands a step to Ruby and waits for its outcome. If the future is dropped (the runtime
    /// shuts down mid-step), the pending entry goes with it and no result is produced, so the
    /// queue message is left to reappear after its visibility timeout.
    pub async fn dispatch(&self, handler: &str, payload: Value) -> StepResult {
        let step_id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (sender, receiver) = oneshot::channel();
        self.pending_map().insert(step_id, sender);
        let _forget_on_drop = PendingGuard { bridge: self, step_id };
        let request = StepRequest { step_id, handler: handler.to_owned(), payload };
        self.counters.dispatched.fetch_add(1, Ordering::Relaxed);
        if self.steps.send(Event::Step(request)).is_err() {
            // The FFI handle is gone: stay pending until the runtime drops this future.
            std::future::pending::<()>().await;
        }
        match receiver.await {
            Ok(result) => result,
            // Only reachable if the entry was removed without an answer; keep the step pending.
            Err(_) => std::future::pending().await,
        }
    }

    /// Tells `next_step` that the runtime has ended (why), waking it at once.
    pub fn end(&self, reason: String) {
        let _ = self.steps.send(Event::Ended(reason));
    }

    /// Delivers Ruby's outcome to the waiting handler.
    pub fn complete(&self, step_id: &str, outcome_json: &str) -> Result<(), String> {
        let id: u64 = step_id.parse().map_err(|_| {
            format!("invalid step id {step_id:?}: expected the step_id string from next_step")
        })?;
        let outcome = Outcome::parse(outcome_json)?;
        let sender = self.pending_map().remove(&id).ok_or_else(|| {
            format!("unknown step id {id}: already completed, or never handed out")
        })?;
        // Counted here, on the caller's thread, so `stats` right after is exact.
        let counter = match outcome {
            Outcome::Success { .. } => &self.counters.succeeded,
            Outcome::Error { .. } => &self.counters.failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        // The handler may have been cancelled meanwhile (shutdown); nothing waits then.
        let _ = sender.send(outcome.into_result());
        Ok(())
    }

    pub fn pending_count(&self) -> usize {
        self.pending_map().len()
    }

    fn pending_map(&self) -> std::sync::MutexGuard<'_, HashMap<u64, oneshot::Sender<StepResult>>> {
        // A panic while holding this lock leaves the map consistent (single insert/remove).
        self.pending.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

struct PendingGuard<'a> {
    bridge: &'a Bridge,
    step_id: u64,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.bridge.pending_map().remove(&self.step_id);
    }
}

/// Waits up to `timeout` for the next event. `None` on timeout.
pub fn next_event(
    runtime: &tokio::runtime::Runtime,
    receiver: &mut StepReceiver,
    timeout: Duration,
) -> Option<Event> {
    runtime.block_on(async { tokio::time::timeout(timeout, receiver.recv()).await.ok().flatten() })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn next_step(
        runtime: &tokio::runtime::Runtime,
        receiver: &mut StepReceiver,
        timeout: Duration,
    ) -> Option<StepRequest> {
        match next_event(runtime, receiver, timeout)? {
            Event::Step(step) => Some(step),
            Event::Ended(reason) => panic!("unexpected end: {reason}"),
        }
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap()
    }

    #[test]
    fn success_and_error_outcomes_reach_the_handler() {
        let rt = runtime();
        let (bridge, mut receiver) = Bridge::new();
        let bridge = Arc::new(bridge);
        let first = rt.spawn({
            let bridge = bridge.clone();
            async move { bridge.dispatch("square", json!({"n": 3})).await }
        });
        let step = next_step(&rt, &mut receiver, Duration::from_secs(5)).expect("a step");
        assert_eq!(step.handler, "square");
        assert_eq!(step.payload, json!({"n": 3}));
        bridge
            .complete(&step.step_id.to_string(), r#"{"status":"success","result":{"value":9}}"#)
            .unwrap();
        assert_eq!(rt.block_on(first).unwrap(), Ok(json!({"value": 9})));

        let second = rt.spawn({
            let bridge = bridge.clone();
            async move { bridge.dispatch("boom", json!(null)).await }
        });
        let step = next_step(&rt, &mut receiver, Duration::from_secs(5)).expect("a step");
        bridge
            .complete(
                &step.step_id.to_string(),
                r#"{"status":"error","message":"no luck","error_class":"RuntimeError"}"#,
            )
            .unwrap();
        assert_eq!(rt.block_on(second).unwrap(), Err("RuntimeError: no luck".to_owned()));
        assert_eq!(bridge.pending_count(), 0);
        assert_eq!(bridge.counters.succeeded.load(Ordering::Relaxed), 1);
        assert_eq!(bridge.counters.failed.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn malformed_outcomes_and_unknown_ids_are_rejected_and_the_step_stays_pending() {
        let rt = runtime();
        let (bridge, mut receiver) = Bridge::new();
        let bridge = Arc::new(bridge);
        let _waiting = rt.spawn({
            let bridge = bridge.clone();
            async move { bridge.dispatch("h", json!({})).await }
        });
        let step = next_step(&rt, &mut receiver, Duration::from_secs(5)).expect("a step");
        let id = step.step_id.to_string();
        let err = bridge.complete(&id, "{not json").unwrap_err();
        assert!(err.starts_with("invalid step outcome JSON"), "{err}");
        let err = bridge.complete(&id, r#"{"status":"maybe"}"#).unwrap_err();
        assert!(err.starts_with("invalid step outcome JSON"), "{err}");
        let err = bridge.complete("x1", r#"{"status":"success","result":1}"#).unwrap_err();
        assert!(err.contains("invalid step id \"x1\""), "{err}");
        let err = bridge.complete("999", r#"{"status":"success","result":1}"#).unwrap_err();
        assert!(err.contains("unknown step id 999"), "{err}");
        assert_eq!(bridge.pending_count(), 1);
        bridge.complete(&id, r#"{"status":"success","result":1}"#).unwrap();
        let err = bridge.complete(&id, r#"{"status":"success","result":1}"#).unwrap_err();
        assert!(err.contains("already completed"), "{err}");
    }

    #[test]
    fn next_step_times_out_without_work() {
        let rt = runtime();
        let (_bridge, mut receiver) = Bridge::new();
        assert!(next_step(&rt, &mut receiver, Duration::from_millis(20)).is_none());
    }

    #[test]
    fn a_cancelled_dispatch_forgets_its_step() {
        let rt = runtime();
        let (bridge, mut receiver) = Bridge::new();
        let bridge = Arc::new(bridge);
        let task = rt.spawn({
            let bridge = bridge.clone();
            async move { bridge.dispatch("h", json!({})).await }
        });
        let step = next_step(&rt, &mut receiver, Duration::from_secs(5)).expect("a step");
        task.abort();
        let _ = rt.block_on(task);
        assert_eq!(bridge.pending_count(), 0);
        let err = bridge
            .complete(&step.step_id.to_string(), r#"{"status":"success","result":1}"#)
            .unwrap_err();
        assert!(err.contains("unknown step id"), "{err}");
    }
}
