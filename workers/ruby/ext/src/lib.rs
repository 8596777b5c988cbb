//! C ABI over the `tasker-worker` runtime for the Ruby worker (`workers/ruby/bin/server.rb`,
//! which loads this library with Ruby's standard-library Fiddle).
//!
//! The Rust side does all queue, database and HTTP work (`/health` reports
//! `"language": "ruby"`); Ruby only runs step handlers. Each handler name Ruby registers
//! becomes a handler in the worker's registry that forwards the step through a channel to
//! [`tasker_ruby_next_step`] and waits for [`tasker_ruby_complete_step`].
//!
//! # Memory ownership
//! - Strings passed *to* Rust (`const char *`, NUL-terminated UTF-8) stay owned by the caller
//!   and are only borrowed for the duration of the call; Rust copies what it keeps.
//! - Every `char *` returned *by* Rust (step JSON, error messages, stats) is allocated by
//!   Rust and must be released with [`tasker_ruby_free_string`] exactly once; never with
//!   `free()`. A NULL return carries no allocation.
//! - The `TaskerRubyWorker *` handle from a `start` function is owned by the caller until it
//!   is passed to [`tasker_ruby_stop`], which frees it; the handle must not be used after.
//!   One thread at a time may use a handle (the Ruby worker calls from its main thread).
//!
//! # Errors and panics
//! No panic crosses the boundary: every entry point runs under `catch_unwind` and turns a
//! panic into an error string (or a `stopped` step document for `next_step`).

mod bridge;
mod synthetic;
mod worker;

use std::ffi::{CStr, CString, c_char};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::{Value, json};

use bridge::{Bridge, Event, StepReceiver};

/// The opaque handle Ruby holds.
pub struct TaskerRubyWorker {
    runtime: Option<tokio::runtime::Runtime>,
    bridge: Arc<Bridge>,
    receiver: StepReceiver,
    /// Why the runtime ended on its own (the worker lost its database, the synthetic feed
    /// is done); once set, `next_step` keeps reporting it as a `stopped` document.
    ended: Option<String>,
    backend: Backend,
}

enum Backend {
    Worker(worker::Running),
    Synthetic(tokio::task::JoinHandle<()>),
}

impl TaskerRubyWorker {
    fn stop(mut self, budget: Duration) -> Result<(), String> {
        let runtime = self.runtime.take().expect("the runtime lives until stop");
        let result = match self.backend {
            Backend::Worker(running) => running.stop(&runtime, budget, self.bridge.pending_count()),
            Backend::Synthetic(feeder) => {
                feeder.abort();
                Ok(())
            }
        };
        // Cancels whatever is still running, including handlers waiting for Ruby: their
        // steps get no result and reappear after the queue's visibility timeout.
        runtime.shutdown_timeout(Duration::from_millis(200));
        result
    }
}

fn new_runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("tasker-ruby-ext")
        .enable_all()
        .build()
        .map_err(|err| format!("cannot start the tokio runtime: {err}"))
}

/// Starts the worker runtime from a generated worker config file (placeholders are
/// substituted from the process environment: `DATABASE_URL`, `TASKER_WEB_BIND_ADDRESS`,
/// `TASKER_INSTANCE_ID`, ...). It connects, creates the queues of the handlers' namespaces,
/// serves `/health` and starts consuming before it returns.
///
/// `handlers_json` names the Ruby handlers by namespace: `{"ruby":["ruby_linear_step_1",...]}`.
/// Returns a handle, or NULL with `*error_out` set to the error message (free it with
/// `tasker_ruby_free_string`).
///
/// # Safety
/// `config_path` and `handlers_json` are NUL-terminated strings; `error_out` is NULL or
/// points to writable storage for one pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tasker_ruby_start(
    config_path: *const c_char,
    handlers_json: *const c_char,
    error_out: *mut *mut c_char,
) -> *mut TaskerRubyWorker {
    let started = guard(|| {
        let config_path = unsafe { borrow_str(config_path, "config_path")? };
        let handlers = parse_handlers(unsafe { borrow_str(handlers_json, "handlers_json")? })?;
        let runtime = new_runtime()?;
        let (bridge, receiver) = Bridge::new();
        let bridge = Arc::new(bridge);
        let running = worker::start(&runtime, config_path, &handlers, bridge.clone())?;
        Ok(TaskerRubyWorker {
            runtime: Some(runtime),
            bridge,
            receiver,
            ended: None,
            backend: Backend::Worker(running),
        })
    });
    unsafe { into_handle(started, error_out) }
}

/// Starts a handle whose steps come from a generated feed instead of the queues (no
/// database, no HTTP), for soak tests and benchmarks. `spec_json`:
/// `{"handlers":[names...],"count":N,"context":{...}}`. The steps are dispatched one at a
/// time; after the last one is completed `next_step` reports `stopped`.
///
/// # Safety
/// As [`tasker_ruby_start`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tasker_ruby_start_synthetic(
    spec_json: *const c_char,
    error_out: *mut *mut c_char,
) -> *mut TaskerRubyWorker {
    let started = guard(|| {
        let spec = synthetic::Spec::parse(unsafe { borrow_str(spec_json, "spec_json")? })?;
        let runtime = new_runtime()?;
        let (bridge, receiver) = Bridge::new();
        let bridge = Arc::new(bridge);
        let feeder = runtime.spawn({
            let bridge = bridge.clone();
            async move {
                let count = spec.count;
                synthetic::feed(&bridge, spec).await;
                bridge.end(format!("synthetic feed of {count} steps finished"));
            }
        });
        Ok(TaskerRubyWorker {
            runtime: Some(runtime),
            bridge,
            receiver,
            ended: None,
            backend: Backend::Synthetic(feeder),
        })
    });
    unsafe { into_handle(started, error_out) }
}

/// Waits up to `timeout_ms` for the next step. Returns NULL when none arrived, else a JSON
/// document: `{"type":"step","step_id":"17","handler":"...","payload":{...}}`, or
/// `{"type":"stopped","reason":"..."}` once the runtime has ended and no step will come.
///
/// # Safety
/// `handle` comes from a `start` function and has not been stopped.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tasker_ruby_next_step(
    handle: *mut TaskerRubyWorker,
    timeout_ms: u64,
) -> *mut c_char {
    let taken = guard(|| {
        let worker = unsafe { handle.as_mut() }.ok_or("next_step: the handle is NULL")?;
        if let Some(reason) = &worker.ended {
            return Ok(Some(stopped(reason)));
        }
        let TaskerRubyWorker { runtime, receiver, .. } = worker;
        let runtime = runtime.as_ref().expect("the runtime lives until stop");
        match bridge::next_event(runtime, receiver, Duration::from_millis(timeout_ms)) {
            Some(Event::Step(step)) => Ok(Some(step.to_json())),
            Some(Event::Ended(reason)) => {
                let document = stopped(&reason);
                worker.ended = Some(reason);
                Ok(Some(document))
            }
            None => Ok(None),
        }
    });
    match taken {
        Ok(Some(document)) => into_c_string(document.to_string()),
        Ok(None) => std::ptr::null_mut(),
        Err(message) => into_c_string(stopped(&message).to_string()),
    }
}

/// Delivers Ruby's outcome for a step: `outcome_json` is `{"status":"success","result":...}`
/// or `{"status":"error","message":"...","error_class":"..."}`. Returns NULL on success, or
/// an error message (malformed outcome, unknown step id) and the step stays pending.
///
/// # Safety
/// `handle` as for [`tasker_ruby_next_step`]; the strings are NUL-terminated.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tasker_ruby_complete_step(
    handle: *mut TaskerRubyWorker,
    step_id: *const c_char,
    outcome_json: *const c_char,
) -> *mut c_char {
    let completed = guard(|| {
        let worker = unsafe { handle.as_ref() }.ok_or("complete_step: the handle is NULL")?;
        let step_id = unsafe { borrow_str(step_id, "step_id")? };
        let outcome = unsafe { borrow_str(outcome_json, "outcome_json")? };
        worker.bridge.complete(step_id, outcome)
    });
    match completed {
        Ok(()) => std::ptr::null_mut(),
        Err(message) => into_c_string(message),
    }
}

/// Counters as JSON: `{"dispatched":N,"succeeded":N,"failed":N,"pending":N}`.
///
/// # Safety
/// `handle` as for [`tasker_ruby_next_step`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tasker_ruby_stats(handle: *mut TaskerRubyWorker) -> *mut c_char {
    let stats = guard(|| {
        let worker = unsafe { handle.as_ref() }.ok_or("stats: the handle is NULL")?;
        let counters = &worker.bridge.counters;
        Ok(json!({
            "dispatched": counters.dispatched.load(Ordering::Relaxed),
            "succeeded": counters.succeeded.load(Ordering::Relaxed),
            "failed": counters.failed.load(Ordering::Relaxed),
            "pending": worker.bridge.pending_count(),
        }))
    });
    match stats {
        Ok(document) => into_c_string(document.to_string()),
        Err(message) => into_c_string(json!({ "error": message }).to_string()),
    }
}

/// Stops the runtime (graceful worker shutdown within `timeout_ms`, then in-flight steps are
/// abandoned to their queue's visibility timeout) and frees the handle. Returns NULL, or an
/// error message about an unclean shutdown; the handle is freed either way.
///
/// # Safety
/// `handle` comes from a `start` function and is not used again after this call.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tasker_ruby_stop(
    handle: *mut TaskerRubyWorker,
    timeout_ms: u64,
) -> *mut c_char {
    let stopped = guard(|| {
        if handle.is_null() {
            return Err("stop: the handle is NULL".to_owned());
        }
        let worker = unsafe { Box::from_raw(handle) };
        worker.stop(Duration::from_millis(timeout_ms))
    });
    match stopped {
        Ok(()) => std::ptr::null_mut(),
        Err(message) => into_c_string(message),
    }
}

/// Frees a string returned by this library. NULL is ignored.
///
/// # Safety
/// `ptr` is NULL or a pointer returned by this library that has not been freed yet.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn tasker_ruby_free_string(ptr: *mut c_char) {
    if ptr.is_null() {
        return;
    }
    let _ = catch_unwind(AssertUnwindSafe(|| drop(unsafe { CString::from_raw(ptr) })));
}

/// Runs an entry point's body, turning a panic into an error message.
fn guard<T>(body: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(result) => result,
        Err(panic) => {
            let detail = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_owned());
            Err(format!("internal error in tasker-worker-ruby-ext: {detail}"))
        }
    }
}

unsafe fn borrow_str<'a>(ptr: *const c_char, name: &str) -> Result<&'a str, String> {
    if ptr.is_null() {
        return Err(format!("{name} is NULL"));
    }
    unsafe { CStr::from_ptr(ptr) }.to_str().map_err(|_| format!("{name} is not valid UTF-8"))
}

fn parse_handlers(text: &str) -> Result<worker::HandlerNames, String> {
    let names: worker::HandlerNames = serde_json::from_str(text).map_err(|err| {
        format!(
            "handlers_json must map namespaces to handler names, e.g. {{\"ruby\":[\"h\"]}}: {err}"
        )
    })?;
    if names.values().all(Vec::is_empty) {
        return Err("handlers_json names no handler: register at least one Ruby handler".to_owned());
    }
    Ok(names)
}

fn stopped(reason: &str) -> Value {
    json!({ "type": "stopped", "reason": reason })
}

fn into_c_string(text: String) -> *mut c_char {
    // Interior NULs cannot cross as a C string; JSON never contains raw NULs.
    let text = text.replace('\0', "\\u0000");
    CString::new(text).expect("NULs were escaped").into_raw()
}

unsafe fn into_handle(
    started: Result<TaskerRubyWorker, String>,
    error_out: *mut *mut c_char,
) -> *mut TaskerRubyWorker {
    match started {
        Ok(worker) => Box::into_raw(Box::new(worker)),
        Err(message) => {
            if !error_out.is_null() {
                unsafe { *error_out = into_c_string(message) };
            }
            std::ptr::null_mut()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(text: &str) -> CString {
        CString::new(text).unwrap()
    }

    unsafe fn take(ptr: *mut c_char) -> Option<String> {
        if ptr.is_null() {
            return None;
        }
        let text = unsafe { CStr::from_ptr(ptr) }.to_str().unwrap().to_owned();
        unsafe { tasker_ruby_free_string(ptr) };
        Some(text)
    }

    #[test]
    fn synthetic_steps_round_trip_through_the_c_abi() {
        unsafe {
            let mut error = std::ptr::null_mut();
            let spec = c(r#"{"handlers":["a","b"],"count":3,"context":{"even_number":2}}"#);
            let handle = tasker_ruby_start_synthetic(spec.as_ptr(), &mut error);
            assert!(!handle.is_null(), "{:?}", take(error));
            let mut handlers = Vec::new();
            for _ in 0..3 {
                let step: Value =
                    serde_json::from_str(&take(tasker_ruby_next_step(handle, 5000)).unwrap())
                        .unwrap();
                assert_eq!(step["type"], "step");
                assert_eq!(step["payload"]["context"]["even_number"], 2);
                handlers.push(step["handler"].as_str().unwrap().to_owned());
                let id = c(step["step_id"].as_str().unwrap());
                let outcome = c(r#"{"status":"success","result":{"ok":true}}"#);
                assert_eq!(
                    take(tasker_ruby_complete_step(handle, id.as_ptr(), outcome.as_ptr())),
                    None
                );
            }
            assert_eq!(handlers, ["a", "b", "a"]);
            let end: Value =
                serde_json::from_str(&take(tasker_ruby_next_step(handle, 5000)).unwrap()).unwrap();
            assert_eq!(
                end,
                json!({"type":"stopped","reason":"synthetic feed of 3 steps finished"})
            );
            let stats: Value =
                serde_json::from_str(&take(tasker_ruby_stats(handle)).unwrap()).unwrap();
            assert_eq!(stats, json!({"dispatched":3,"succeeded":3,"failed":0,"pending":0}));
            assert_eq!(take(tasker_ruby_stop(handle, 500)), None);
        }
    }

    #[test]
    fn bad_arguments_come_back_as_messages() {
        unsafe {
            let mut error = std::ptr::null_mut();
            let handle = tasker_ruby_start_synthetic(c("[1,2]").as_ptr(), &mut error);
            assert!(handle.is_null());
            assert!(take(error).unwrap().starts_with("invalid synthetic spec"));

            let mut error = std::ptr::null_mut();
            let handle = tasker_ruby_start(std::ptr::null(), c("{}").as_ptr(), &mut error);
            assert!(handle.is_null());
            assert_eq!(take(error).unwrap(), "config_path is NULL");

            let mut error = std::ptr::null_mut();
            let handle =
                tasker_ruby_start(c("/x.toml").as_ptr(), c(r#"{"ruby":[]}"#).as_ptr(), &mut error);
            assert!(handle.is_null());
            assert!(take(error).unwrap().starts_with("handlers_json names no handler"));

            let mut error = std::ptr::null_mut();
            let handlers = c(r#"{"ruby":["h"]}"#);
            let handle = tasker_ruby_start(
                c("/nonexistent/worker.toml").as_ptr(),
                handlers.as_ptr(),
                &mut error,
            );
            assert!(handle.is_null());
            let message = take(error).unwrap();
            assert!(message.contains("/nonexistent/worker.toml"), "{message}");

            let stopped: Value = serde_json::from_str(
                &take(tasker_ruby_next_step(std::ptr::null_mut(), 1)).unwrap(),
            )
            .unwrap();
            assert_eq!(stopped["type"], "stopped");
            let message = take(tasker_ruby_complete_step(
                std::ptr::null_mut(),
                c("1").as_ptr(),
                c("{}").as_ptr(),
            ));
            assert_eq!(message.unwrap(), "complete_step: the handle is NULL");
            assert!(take(tasker_ruby_stop(std::ptr::null_mut(), 1)).is_some());
        }
    }

    #[test]
    fn a_panic_becomes_an_error_message() {
        let result: Result<(), String> = guard(|| panic!("kaboom"));
        assert_eq!(result.unwrap_err(), "internal error in tasker-worker-ruby-ext: kaboom");
    }
}
