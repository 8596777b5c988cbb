//! The HTTP API. Client mistakes (bad JSON, wrong fields, unknown template, malformed
//! id, unknown route) get a 4xx with a JSON `{"error": ...}`; only server faults are 5xx.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::{Method, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use tasker_client::api::{CreateTaskRequest, CreateTaskResponse, ErrorResponse, Health};
use uuid::Uuid;

use crate::engine::{CreateTaskError, Engine};

#[derive(Clone)]
pub struct AppState {
    pub engine: Arc<Engine>,
    pub instance_id: Option<String>,
    pub consumer_running: Arc<AtomicBool>,
}

pub fn router(state: AppState, request_timeout: Duration) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/health/ready", get(ready))
        .route("/v1/tasks", post(create_task))
        .route("/v1/tasks/{task_uuid}", get(get_task))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn(move |request, next: Next| async move {
            match tokio::time::timeout(request_timeout, next.run(request)).await {
                Ok(response) => response,
                Err(_) => error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("request not answered within {request_timeout:?}"),
                ),
            }
        }))
        .with_state(state)
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(ErrorResponse { error: message.into() })).into_response()
}

async fn health(State(state): State<AppState>) -> Json<Health> {
    Json(Health {
        status: "healthy".into(),
        service: "tasker-orchestration".into(),
        worker_id: None,
        language: None,
        instance_id: state.instance_id.clone(),
    })
}

async fn ready(State(state): State<AppState>) -> Response {
    let failing = match tasker_shared::db::check_ready(state.engine.pool()).await {
        Err(message) => Some(("database", message)),
        Ok(()) if !state.consumer_running.load(Ordering::SeqCst) => {
            Some(("result_consumer", "the step-results consumer is not running".to_string()))
        }
        Ok(()) => None,
    };
    match failing {
        None => {
            Json(json!({"status": "ready", "checks": {"database": "ok", "result_consumer": "ok"}}))
                .into_response()
        }
        Some((check, message)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "not_ready", "failing_check": check, "error": message})),
        )
            .into_response(),
    }
}

async fn create_task(
    State(state): State<AppState>,
    body: Result<Json<CreateTaskRequest>, JsonRejection>,
) -> Response {
    let Json(request) = match body {
        Ok(body) => body,
        Err(rejection) => return error(rejection.status(), rejection.body_text()),
    };
    match state.engine.create_task(&request).await {
        Ok(task_uuid) => {
            (StatusCode::CREATED, Json(CreateTaskResponse { task_uuid })).into_response()
        }
        Err(CreateTaskError::Invalid(message)) => error(StatusCode::UNPROCESSABLE_ENTITY, message),
        Err(CreateTaskError::Internal(err)) => {
            tracing::error!("creating a task failed: {err:#}");
            error(StatusCode::INTERNAL_SERVER_ERROR, "internal error creating the task")
        }
    }
}

async fn get_task(
    State(state): State<AppState>,
    task_uuid: Result<Path<Uuid>, PathRejection>,
) -> Response {
    let Path(task_uuid) = match task_uuid {
        Ok(path) => path,
        Err(rejection) => return error(StatusCode::BAD_REQUEST, rejection.body_text()),
    };
    match state.engine.get_task(task_uuid).await {
        Ok(Some(task)) => Json(task).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, format!("no task {task_uuid}")),
        Err(err) => {
            tracing::error!("reading task {task_uuid} failed: {err:#}");
            error(StatusCode::INTERNAL_SERVER_ERROR, "internal error reading the task")
        }
    }
}

async fn not_found(method: Method, uri: Uri) -> Response {
    error(StatusCode::NOT_FOUND, format!("no route for {method} {uri}"))
}

async fn method_not_allowed(method: Method, uri: Uri) -> Response {
    error(StatusCode::METHOD_NOT_ALLOWED, format!("{method} is not allowed on {uri}"))
}
