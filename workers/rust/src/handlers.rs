//! Step handlers of the integration workflows (namespace `rust`). Every handler reads its
//! input from the task context or its dependencies' results and returns
//! `{"result": <integer>}`, so tests can check exact numbers.
//!
//! Any task may set `context.step_delay_ms` (capped at 10 s) to make each step take
//! that long, e.g. to stop a worker in the middle of a workflow.
//!
//! Namespace `rust_faults` holds fault injection for tests: its `crash` handler aborts
//! the worker process, as a crashing native library would (a poison message).

use std::time::Duration;

use serde_json::{Value, json};
use tasker_worker::{HandlerRegistry, HandlerResult, StepMessage};

pub const NAMESPACE: &str = "rust";

/// Handlers that misbehave on purpose, for fault tests (`crash_workflow`).
pub const FAULTS_NAMESPACE: &str = "rust_faults";

/// A one-input integer step; `None` on overflow.
type UnaryOp = fn(i64) -> Option<i64>;

pub fn registry() -> HandlerRegistry {
    let mut registry = HandlerRegistry::new();
    let unary: [(&str, UnaryOp); 9] = [
        ("linear_square", |n| n.checked_mul(n)),
        ("diamond_start", |n| n.checked_mul(n)),
        ("diamond_double", |n| n.checked_mul(2)),
        ("diamond_add_ten", |n| n.checked_add(10)),
        ("tree_root", |n| n.checked_mul(n)),
        ("tree_add_one", |n| n.checked_add(1)),
        ("tree_add_two", |n| n.checked_add(2)),
        ("tree_double", |n| n.checked_mul(2)),
        ("tree_triple", |n| n.checked_mul(3)),
    ];
    for (name, op) in unary {
        register(&mut registry, name, move |step| {
            let input = single_input(step)?;
            let output = op(input).ok_or_else(|| format!("{name}: integer overflow on {input}"))?;
            Ok(json!({ "result": output }))
        });
    }
    register(&mut registry, "diamond_join", sum_of_dependencies);
    register(&mut registry, "tree_converge", sum_of_dependencies);
    register(&mut registry, "fail_then_succeed", |step| {
        let fail_times = step.context.get("fail_times").and_then(Value::as_i64).unwrap_or(2);
        if i64::from(step.attempt) <= fail_times {
            return Err(format!("intentional failure on attempt {} of {fail_times}", step.attempt));
        }
        Ok(json!({ "result": context_number(step)?, "succeeded_on_attempt": step.attempt }))
    });
    register(&mut registry, "always_fail", |step| {
        Err(format!("this step always fails (attempt {})", step.attempt))
    });
    registry.register_sync(FAULTS_NAMESPACE, "crash", |step| {
        eprintln!(
            "crash step `{}` (attempt {}): aborting the worker",
            step.step_name, step.attempt
        );
        std::process::abort()
    });
    registry.register_sync(FAULTS_NAMESPACE, "succeed", |_| Ok(json!({ "result": 0 })));
    registry
}

/// Registers an async wrapper that honours `context.step_delay_ms`, then runs `compute`.
fn register(
    registry: &mut HandlerRegistry,
    name: &str,
    compute: impl Fn(&StepMessage) -> HandlerResult + Send + Sync + Copy + 'static,
) {
    registry.register(NAMESPACE, name, move |step: StepMessage| async move {
        if let Some(delay) = step.context.get("step_delay_ms").and_then(Value::as_u64) {
            tokio::time::sleep(Duration::from_millis(delay.min(10_000))).await;
        }
        compute(&step)
    });
}

/// The input of a step: its single dependency's `result`, or `context.even_number` for
/// a root step.
fn single_input(step: &StepMessage) -> Result<i64, String> {
    match step.dependency_results.len() {
        0 => context_number(step),
        1 => {
            let (name, result) = step.dependency_results.iter().next().expect("one entry");
            result
                .get("result")
                .and_then(Value::as_i64)
                .ok_or_else(|| format!("dependency `{name}` has no integer `result`: {result}"))
        }
        n => Err(format!("expected at most one dependency, got {n}")),
    }
}

fn context_number(step: &StepMessage) -> Result<i64, String> {
    let value = step.context.get("even_number").ok_or("context.even_number is missing")?;
    let n = value
        .as_i64()
        .ok_or_else(|| format!("context.even_number must be an integer, got {value}"))?;
    if n % 2 != 0 {
        return Err(format!("context.even_number must be even, got {n}"));
    }
    Ok(n)
}

fn sum_of_dependencies(step: &StepMessage) -> HandlerResult {
    if step.dependency_results.is_empty() {
        return Err("expected dependency results to sum".into());
    }
    let mut sum: i64 = 0;
    for (name, result) in &step.dependency_results {
        let n = result
            .get("result")
            .and_then(Value::as_i64)
            .ok_or_else(|| format!("dependency `{name}` has no integer `result`: {result}"))?;
        sum = sum.checked_add(n).ok_or("integer overflow")?;
    }
    Ok(json!({ "result": sum }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(handler: &str, context: Value, deps: Value, attempt: i32) -> StepMessage {
        serde_json::from_value(json!({
            "task_uuid": "00000000-0000-0000-0000-000000000000",
            "step_uuid": "00000000-0000-0000-0000-000000000000",
            "namespace": NAMESPACE,
            "task_name": "t",
            "task_version": "1.0.0",
            "step_name": handler,
            "handler": handler,
            "attempt": attempt,
            "max_attempts": 3,
            "context": context,
            "dependency_results": deps,
        }))
        .unwrap()
    }

    async fn run(handler: &str, context: Value, deps: Value, attempt: i32) -> HandlerResult {
        let registry = registry();
        let handler_fn = registry.get(NAMESPACE, handler).expect("registered");
        handler_fn.call(step(handler, context, deps, attempt)).await
    }

    #[tokio::test]
    async fn root_steps_square_the_even_input() {
        let out = run("linear_square", json!({"even_number": 6}), json!({}), 1).await;
        assert_eq!(out, Ok(json!({"result": 36})));
        let err = run("linear_square", json!({"even_number": 7}), json!({}), 1).await;
        assert_eq!(err, Err("context.even_number must be even, got 7".into()));
    }

    #[tokio::test]
    async fn dependent_steps_use_their_dependency() {
        let deps = json!({"diamond_start": {"result": 36}});
        assert_eq!(
            run("diamond_double", json!({}), deps.clone(), 1).await,
            Ok(json!({"result": 72}))
        );
        assert_eq!(run("diamond_add_ten", json!({}), deps, 1).await, Ok(json!({"result": 46})));
        let both = json!({"b": {"result": 72}, "c": {"result": 46}});
        assert_eq!(run("diamond_join", json!({}), both, 1).await, Ok(json!({"result": 118})));
    }

    #[tokio::test]
    async fn flaky_step_fails_then_succeeds() {
        let context = json!({"even_number": 2, "fail_times": 2});
        assert!(run("fail_then_succeed", context.clone(), json!({}), 2).await.is_err());
        assert_eq!(
            run("fail_then_succeed", context, json!({}), 3).await,
            Ok(json!({"result": 2, "succeeded_on_attempt": 3}))
        );
        assert!(run("always_fail", json!({}), json!({}), 9).await.is_err());
    }

    #[tokio::test]
    async fn overflow_is_an_error_not_a_panic() {
        let deps = json!({"x": {"result": i64::MAX}});
        assert!(run("linear_square", json!({}), deps, 1).await.is_err());
    }
}
