//! Is a service up, and is it *our* service? An HTTP GET of its health path every
//! 5 ms (a refused connect on the loopback costs microseconds; each wave waits half a
//! period on average past the moment it is up); ready only on 200 with the expected `service` identity and the instance id
//! xtask gave that process. A process that exits while we wait fails at once with its
//! exit status and log tail (the backend says which exited). Shared by every backend.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

pub const PERIOD: Duration = Duration::from_millis(5);
const REQUEST_TIMEOUT: Duration = Duration::from_millis(500);

/// One service to wait for.
pub struct Target<'a> {
    pub name: &'a str,
    pub addr: SocketAddr,
    pub path: &'a str,
    pub identity: &'a str,
    pub instance_id: &'a str,
    /// Already ready (an earlier wave): only watched for an exit, not probed.
    pub ready: bool,
}

/// A minimal HTTP/1.0 GET (no TLS, no keep-alive, no chunking): the status code and body.
pub fn http_get(addr: SocketAddr, path: &str, timeout: Duration) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    // One write: a server may answer (and close) as soon as it has the request line.
    let request = format!(
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes())?;
    let mut response = Vec::new();
    stream.take(1 << 20).read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).ok_or_else(|| {
        std::io::Error::other(format!(
            "not an HTTP response: {:?}",
            head.lines().next().unwrap_or("")
        ))
    })?;
    Ok((status, body.to_string()))
}

/// Decides from one health answer whether it comes from the process we started.
/// The error describes what answered, for the timeout message.
pub fn judge(status: u16, body: &str, identity: &str, instance_id: &str) -> Result<(), String> {
    let json: Option<serde_json::Value> = serde_json::from_str(body).ok();
    let field = |key: &str| {
        json.as_ref().and_then(|j| j.get(key)).and_then(|v| v.as_str()).map(str::to_string)
    };
    let service = field("service");
    if service.as_deref() != Some(identity) {
        let who = match (&json, service) {
            (None, _) => "a non-JSON body".to_string(),
            (Some(_), None) => "JSON without a `service` field".to_string(),
            (Some(_), Some(other)) => format!("service `{other}`"),
        };
        return Err(format!(
            "HTTP {status} from {who}: not this service (another program on the port?)"
        ));
    }
    if field("instance_id").as_deref() != Some(instance_id) {
        return Err(format!(
            "HTTP {status} from `{identity}` with instance_id {:?}, expected {instance_id:?}: another instance answers on this port",
            field("instance_id").unwrap_or_default()
        ));
    }
    if status != 200 {
        return Err(format!("HTTP {status} from `{identity}` (starting up)"));
    }
    Ok(())
}

/// Probes once.
pub fn check(
    addr: SocketAddr,
    path: &str,
    identity: &str,
    instance_id: &str,
) -> Result<(), String> {
    match http_get(addr, path, REQUEST_TIMEOUT) {
        Ok((status, body)) => judge(status, &body, identity, instance_id),
        Err(err) => Err(err.to_string()),
    }
}

#[derive(Debug)]
pub enum Failure {
    /// A process ended before it was ready.
    Exited {
        name: String,
        status: String,
        /// Where its whole log is, for the message.
        log: String,
        tail: String,
    },
    /// The deadline passed; each service not ready with its last observation.
    Timeout {
        waited: Duration,
        pending: Vec<(String, String)>,
    },
    Interrupted,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Exited { name, status, log, tail } => write!(
                f,
                "service `{name}` exited during startup ({status}); last lines of {log}:\n{tail}"
            ),
            Failure::Timeout { waited, pending } => {
                let list: Vec<String> =
                    pending.iter().map(|(n, why)| format!("`{n}` ({why})")).collect();
                write!(f, "not ready after {:.0?}: {}", waited, list.join(", "))
            }
            Failure::Interrupted => f.write_str("interrupted"),
        }
    }
}

impl std::error::Error for Failure {}

/// Waits until every target is ready, `exited` reports a process that ended (also one
/// already ready: a dependency that dies while its dependents start is reported at
/// once too), `timeout` passes, or `interrupted` says to stop.
pub fn wait_all(
    targets: &[Target],
    timeout: Duration,
    exited: &mut dyn FnMut() -> Option<Failure>,
    interrupted: &dyn Fn() -> bool,
) -> Result<(), Failure> {
    let started = Instant::now();
    let mut last: Vec<Option<String>> = targets
        .iter()
        .map(|t| if t.ready { None } else { Some("no answer yet".to_string()) })
        .collect();
    loop {
        if let Some(failure) = exited() {
            return Err(failure);
        }
        for (target, last) in targets.iter().zip(last.iter_mut()) {
            if last.is_some() {
                *last = check(target.addr, target.path, target.identity, target.instance_id).err();
            }
        }
        if last.iter().all(Option::is_none) {
            return Ok(());
        }
        if interrupted() {
            return Err(Failure::Interrupted);
        }
        if started.elapsed() >= timeout {
            let pending = targets
                .iter()
                .zip(&last)
                .filter_map(|(t, why)| why.as_ref().map(|w| (t.name.to_string(), w.clone())))
                .collect();
            return Err(Failure::Timeout { waited: timeout, pending });
        }
        std::thread::sleep(PERIOD);
    }
}

/// Waits for the recorded services of a session (all but the first `earlier`, ready
/// already) until `deadline`, failing at once when `exited` reports an exit. A timeout
/// names the whole startup timeout `waited` (later waves only wait for what is left).
pub fn wait_for_services(
    services: &[crate::services::state::ServiceRecord],
    earlier: usize,
    deadline: Instant,
    waited: Duration,
    exited: &mut dyn FnMut() -> Option<Failure>,
) -> anyhow::Result<()> {
    let targets: Vec<Target> = services
        .iter()
        .enumerate()
        .map(|(i, r)| Target {
            name: &r.name,
            addr: r.addr,
            path: &r.health_path,
            identity: &r.identity,
            instance_id: &r.instance_id,
            ready: i < earlier,
        })
        .collect();
    let left = deadline.saturating_duration_since(Instant::now());
    let interrupted = || crate::sys::interrupts::interrupted().is_some();
    match wait_all(&targets, left, exited, &interrupted) {
        Ok(()) => Ok(()),
        Err(Failure::Interrupted) => crate::sys::interrupts::check_interrupted(),
        Err(Failure::Timeout { pending, .. }) => Err(Failure::Timeout { waited, pending }.into()),
        Err(failure) => Err(failure.into()),
    }
}

/// The one knob for slow machines, shared with the end-to-end tests.
pub const MULTIPLIER_VAR: &str = "TASKER_TEST_TIMEOUT_MULTIPLIER";

/// `TASKER_TEST_TIMEOUT_MULTIPLIER` when set, else 3 when `CI` is set (shared CI
/// machines are slower), else 1.
pub fn multiplier() -> f64 {
    std::env::var(MULTIPLIER_VAR)
        .ok()
        .and_then(|m| m.parse::<f64>().ok())
        .filter(|m| *m > 0.0)
        .unwrap_or(if std::env::var_os("CI").is_some() { 3.0 } else { 1.0 })
}

/// A timeout scaled by [`multiplier`].
pub fn scaled(base: Duration) -> Duration {
    base.mul_f64(multiplier())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_our_identity_and_instance_are_ready() {
        let ours = r#"{"status":"healthy","service":"tasker-worker","instance_id":"w-1"}"#;
        assert_eq!(judge(200, ours, "tasker-worker", "w-1"), Ok(()));
        assert!(judge(503, ours, "tasker-worker", "w-1").unwrap_err().contains("starting up"));
        let other = judge(200, ours, "tasker-worker", "w-2").unwrap_err();
        assert!(other.contains("another instance"), "{other}");
        let foreign = judge(200, r#"{"status":"ok"}"#, "tasker-worker", "w-1").unwrap_err();
        assert!(foreign.contains("without a `service` field"), "{foreign}");
        let html = judge(302, "<html>moved</html>", "tasker-worker", "w-1").unwrap_err();
        assert!(html.contains("non-JSON"), "{html}");
        let null_id = r#"{"service":"tasker-orchestration","instance_id":null}"#;
        assert!(judge(200, null_id, "tasker-orchestration", "o-1").is_err());
    }

    #[test]
    fn http_get_reads_status_and_body_from_a_real_socket() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut buf = [0u8; 1024];
            let n = conn.read(&mut buf).unwrap();
            assert!(String::from_utf8_lossy(&buf[..n]).starts_with("GET /health HTTP/1.0\r\n"));
            conn.write_all(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 2\r\n\r\n{}")
                .unwrap();
        });
        assert_eq!(http_get(addr, "/health", REQUEST_TIMEOUT).unwrap(), (503, "{}".to_string()));
        server.join().unwrap();
    }
}
