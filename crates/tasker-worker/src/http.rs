//! `/health` (identity) and `/health/ready` (database answers, every queue consumer runs).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::Shared;

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/health/ready", get(ready))
        .fallback(|method: Method, uri: Uri| async move {
            error(StatusCode::NOT_FOUND, format!("no route for {method} {uri}"))
        })
        .method_not_allowed_fallback(|method: Method, uri: Uri| async move {
            error(StatusCode::METHOD_NOT_ALLOWED, format!("{method} is not allowed on {uri}"))
        })
        .with_state(shared)
}

fn error(status: StatusCode, message: String) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

async fn health(State(shared): State<Arc<Shared>>) -> Response {
    Json(json!({
        "status": "healthy",
        "service": "tasker-worker",
        "worker_id": shared.worker_id,
        "language": shared.language,
        "instance_id": shared.config.execution.instance_id(),
    }))
    .into_response()
}

async fn ready(State(shared): State<Arc<Shared>>) -> Response {
    let running = shared.consumers_running.load(Ordering::SeqCst);
    let failing = match tasker_shared::db::check_ready(&shared.pool).await {
        Err(message) => Some(("database", message)),
        Ok(()) if running != shared.queues.len() => Some((
            "queue_consumers",
            format!("{running} of {} queue consumers running", shared.queues.len()),
        )),
        Ok(()) => None,
    };
    match failing {
        None => Json(json!({"status": "ready", "queues": shared.queues})).into_response(),
        Some((check, message)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "not_ready", "failing_check": check, "error": message})),
        )
            .into_response(),
    }
}
