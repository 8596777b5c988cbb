//! A typed, blocking client for the orchestration API (and the health endpoint every
//! service serves), used by the end-to-end tests and the benchmark. Plain HTTP over
//! `ureq` without TLS: the services listen on localhost.
//!
//! ```no_run
//! use std::time::Duration;
//! use tasker_client::{TaskerClient, api::{CreateTaskRequest, TaskState}};
//! let client = TaskerClient::new("http://127.0.0.1:8080");
//! let uuid = client.create_task(&CreateTaskRequest::new("rust", "linear_workflow", "1.0.0",
//!     serde_json::json!({"even_number": 6})))?;
//! let task = client.wait_for_completion(uuid, Duration::from_secs(30))?;
//! assert_eq!(task.state, TaskState::Complete);
//! # Ok::<(), tasker_client::ClientError>(())
//! ```

pub mod api;

use std::fmt;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use uuid::Uuid;

use api::{CreateTaskRequest, CreateTaskResponse, ErrorResponse, Health, TaskResponse};

#[derive(Debug, Clone, PartialEq)]
pub enum ClientError {
    /// No HTTP response (connection refused, timeout, ...).
    Transport(String),
    /// The server answered with an error status.
    Api { status: u16, message: String },
    /// The body was not what the API promises.
    Decode(String),
    /// The task did not finish in time; carries its last observed state.
    Timeout { task: Box<TaskResponse> },
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Transport(err) => write!(f, "request failed: {err}"),
            ClientError::Api { status, message } => write!(f, "HTTP {status}: {message}"),
            ClientError::Decode(err) => write!(f, "unexpected response body: {err}"),
            ClientError::Timeout { task } => write!(
                f,
                "task {} still {:?} at the deadline; steps: {}",
                task.task_uuid,
                task.state,
                task.steps
                    .iter()
                    .map(|s| format!("{}={:?}/{}", s.name, s.state, s.attempts))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
}

impl std::error::Error for ClientError {}

pub type Result<T> = std::result::Result<T, ClientError>;

/// Client for one service base URL, e.g. `http://127.0.0.1:8080`.
#[derive(Clone)]
pub struct TaskerClient {
    base_url: String,
    agent: ureq::Agent,
}

impl TaskerClient {
    pub fn new(base_url: impl Into<String>) -> TaskerClient {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into();
        TaskerClient { base_url: base_url.into().trim_end_matches('/').to_string(), agent }
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// `GET /health`.
    pub fn health(&self) -> Result<Health> {
        self.get_json("/health")
    }

    /// `GET /health/ready`: `Ok(())` on 200, else the server's reason.
    pub fn ready(&self) -> Result<()> {
        let response = self.get("/health/ready")?;
        expect_json::<serde_json::Value>(response, 200).map(|_| ())
    }

    /// `GET path`, sent once more when the connection ended before any response: a
    /// kept-alive connection that the server, or a proxy between (Docker's port
    /// forwarding), closed just as it was reused. Only an idempotent request may be
    /// repeated (RFC 9110, 9.2.2); a POST's failure is returned as it is.
    fn get(&self, path: &str) -> Result<ureq::http::Response<ureq::Body>> {
        let url = format!("{}{path}", self.base_url);
        let response = match self.agent.get(&url).call() {
            Err(err) if closed_before_a_response(&err) => self.agent.get(&url).call(),
            other => other,
        };
        response.map_err(|err| ClientError::Transport(err.to_string()))
    }

    /// `POST /v1/tasks`: creates a task and returns its id.
    pub fn create_task(&self, request: &CreateTaskRequest) -> Result<Uuid> {
        let response = self
            .agent
            .post(format!("{}/v1/tasks", self.base_url))
            .send_json(request)
            .map_err(|err| ClientError::Transport(err.to_string()))?;
        expect_json::<CreateTaskResponse>(response, 201).map(|created| created.task_uuid)
    }

    /// `GET /v1/tasks/{uuid}`.
    pub fn get_task(&self, task_uuid: Uuid) -> Result<TaskResponse> {
        self.get_json(&format!("/v1/tasks/{task_uuid}"))
    }

    /// Polls the task until it is complete or in error (short polling, backing off from
    /// 2 ms to 50 ms), or fails with [`ClientError::Timeout`] after `timeout`.
    pub fn wait_for_completion(&self, task_uuid: Uuid, timeout: Duration) -> Result<TaskResponse> {
        let deadline = Instant::now() + timeout;
        let mut interval = Duration::from_millis(2);
        loop {
            let task = self.get_task(task_uuid)?;
            if task.state.is_final() {
                return Ok(task);
            }
            if Instant::now() >= deadline {
                return Err(ClientError::Timeout { task: Box::new(task) });
            }
            std::thread::sleep(interval.min(deadline.saturating_duration_since(Instant::now())));
            interval = (interval * 2).min(Duration::from_millis(50));
        }
    }

    /// `GET path` with the status checked and the JSON decoded.
    pub fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        expect_json(self.get(path)?, 200)
    }

    /// `POST path` with a raw body (for testing how the server treats bad input).
    /// Returns the status and the body parsed as JSON (or `Decode` when it is not JSON).
    pub fn post_raw(
        &self,
        path: &str,
        content_type: &str,
        body: &str,
    ) -> Result<(u16, serde_json::Value)> {
        let mut response = self
            .agent
            .post(format!("{}{path}", self.base_url))
            .header("content-type", content_type)
            .send(body)
            .map_err(|err| ClientError::Transport(err.to_string()))?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .read_to_string()
            .map_err(|err| ClientError::Decode(err.to_string()))?;
        let json = serde_json::from_str(&text)
            .map_err(|err| ClientError::Decode(format!("{err}: {text}")))?;
        Ok((status, json))
    }
}

/// The connection closed or reset with no response begun (ureq reports a peer that hung
/// up as "Peer disconnected", an unexpected end of file).
fn closed_before_a_response(err: &ureq::Error) -> bool {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};
    matches!(err, ureq::Error::Io(io)
        if matches!(io.kind(), UnexpectedEof | ConnectionReset | ConnectionAborted | BrokenPipe))
}

fn expect_json<T: DeserializeOwned>(
    mut response: ureq::http::Response<ureq::Body>,
    expected: u16,
) -> Result<T> {
    let status = response.status().as_u16();
    let text =
        response.body_mut().read_to_string().map_err(|err| ClientError::Decode(err.to_string()))?;
    if status != expected {
        let message = serde_json::from_str::<ErrorResponse>(&text).map(|e| e.error).unwrap_or(text);
        return Err(ClientError::Api { status, message });
    }
    serde_json::from_str(&text).map_err(|err| ClientError::Decode(format!("{err}: {text}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead as _, BufReader, Read as _, Write as _};
    use std::net::{TcpListener, TcpStream};

    /// Reads one request (its head, and a body as long as its Content-Length); returns
    /// the request line.
    fn read_request(reader: &mut BufReader<TcpStream>) -> String {
        let mut first = String::new();
        reader.read_line(&mut first).unwrap();
        let mut length = 0;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line.trim().is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap();
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        first.trim().to_string()
    }

    fn respond_ok(stream: &mut TcpStream) {
        let body = r#"{"ok":true}"#;
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        stream.write_all(format!("{head}{body}").as_bytes()).unwrap();
    }

    /// A server that answers the first request on a kept-alive connection, then reads
    /// the second one there and hangs up without answering (a close that crossed the
    /// request on the wire), then answers whatever arrives on new connections. Returns
    /// the base URL and the request lines it saw, in order, once `client_done` is sent.
    fn server_closing_a_reused_connection()
    -> (String, std::sync::mpsc::Sender<()>, std::thread::JoinHandle<Vec<String>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let server = std::thread::spawn(move || {
            let mut seen = Vec::new();
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            seen.push(read_request(&mut reader));
            respond_ok(&mut reader.get_ref().try_clone().unwrap());
            seen.push(read_request(&mut reader));
            drop(reader);
            drop(stream);
            listener.set_nonblocking(true).unwrap();
            while done_rx.try_recv().is_err() {
                match listener.accept() {
                    Ok((stream, _)) => {
                        stream.set_nonblocking(false).unwrap();
                        let mut reader = BufReader::new(stream.try_clone().unwrap());
                        seen.push(read_request(&mut reader));
                        respond_ok(&mut reader.get_ref().try_clone().unwrap());
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
            seen
        });
        (url, done_tx, server)
    }

    #[test]
    fn a_get_whose_reused_connection_closes_is_sent_once_more() {
        let (url, done, server) = server_closing_a_reused_connection();
        let client = TaskerClient::new(url);
        let first: serde_json::Value = client.get_json("/first").unwrap();
        assert_eq!(first["ok"], true);
        let second = client.get_json::<serde_json::Value>("/second");
        done.send(()).unwrap();
        let seen = server.join().unwrap();
        assert_eq!(second.unwrap()["ok"], true);
        assert_eq!(seen, ["GET /first HTTP/1.1", "GET /second HTTP/1.1", "GET /second HTTP/1.1"]);
    }

    #[test]
    fn a_post_whose_reused_connection_closes_is_not_repeated() {
        let (url, done, server) = server_closing_a_reused_connection();
        let client = TaskerClient::new(url);
        client.get_json::<serde_json::Value>("/first").unwrap();
        let posted = client.post_raw("/v1/tasks", "application/json", "{}");
        done.send(()).unwrap();
        let seen = server.join().unwrap();
        assert!(matches!(posted, Err(ClientError::Transport(_))), "{posted:?}");
        assert_eq!(seen, ["GET /first HTTP/1.1", "POST /v1/tasks HTTP/1.1"]);
    }
}
