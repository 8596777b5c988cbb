//! GitHub's REST API, read with the job's token: what a re-run must not take from the
//! replayed event payload (a pull request's labels as they are now). Every failure is
//! one line that names the endpoint and never the token; the caller decides the
//! fallback.
//!
//! The HTTP client (ureq) is always built, so the tests run it against a local server;
//! TLS, which api.github.com needs, comes with the `tls` feature: only the binary CI
//! builds once per run has it (`cargo xtask ci-binary`), since rustls and ring add
//! about half again to xtask's cold build (docs/xtask.md, "Build cost").

use std::time::Duration;

use serde_json::Value;

/// The API root GitHub gives every step (`GITHUB_API_URL`; GitHub Enterprise has its own).
pub const API_URL_VAR: &str = "GITHUB_API_URL";
/// The job's token, passed as env to the one step that reads the API.
pub const TOKEN_VAR: &str = "GITHUB_TOKEN";
const DEFAULT_API_URL: &str = "https://api.github.com";
/// A slow API must not hold the job: the payload is the fallback.
const TIMEOUT: Duration = Duration::from_secs(10);

/// Where and as whom to call the API.
pub struct Api {
    base: String,
    token: String,
}

impl Api {
    /// From the environment; `None` without a token (a run outside GitHub Actions).
    pub fn from_env() -> Option<Api> {
        let token = std::env::var(TOKEN_VAR).ok().filter(|t| !t.trim().is_empty())?;
        let base = std::env::var(API_URL_VAR)
            .ok()
            .filter(|b| !b.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_API_URL.to_string());
        Some(Api { base: base.trim_end_matches('/').to_string(), token: token.trim().to_string() })
    }

    #[cfg(test)]
    pub fn new(base: &str, token: &str) -> Api {
        Api { base: base.trim_end_matches('/').to_string(), token: token.to_string() }
    }

    /// `GET <base><path>` as JSON, or why not, in one line.
    pub fn get_json(&self, path: &str) -> Result<Value, String> {
        let url = format!("{}{path}", self.base);
        if url.starts_with("https://") && !cfg!(feature = "tls") {
            return Err(format!(
                "GET {url}: this xtask was built without TLS (the binary `cargo xtask ci-binary` builds has it)"
            ));
        }
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(TIMEOUT))
            // Statuses are answers to explain, not transport errors.
            .http_status_as_error(false)
            // The token must not follow a redirect to another host.
            .max_redirects(0)
            .build()
            .into();
        let mut response = agent
            .get(&url)
            .header("Accept", "application/vnd.github+json")
            .header("Authorization", &format!("Bearer {}", self.token))
            .header("X-GitHub-Api-Version", "2022-11-28")
            .header("User-Agent", "tasker-core-xtask")
            .call()
            .map_err(|e| format!("GET {url}: {}", self.redact(&e.to_string())))?;
        let status = response.status().as_u16();
        let header = |name: &str| {
            response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
        };
        let rate_limited = header("x-ratelimit-remaining").as_deref() == Some("0");
        let reset = header("x-ratelimit-reset");
        let body = response.body_mut().read_to_string().map_err(|e| {
            format!("GET {url}: reading the answer: {}", self.redact(&e.to_string()))
        })?;
        explain(&url, status, rate_limited, reset.as_deref(), &body)
    }

    /// `text` without the token, whatever a lower layer put into it.
    fn redact(&self, text: &str) -> String {
        text.replace(&self.token, "***")
    }
}

/// The JSON of a 200 answer, or one line saying what GitHub answered instead.
pub fn explain(
    url: &str,
    status: u16,
    rate_limited: bool,
    reset: Option<&str>,
    body: &str,
) -> Result<Value, String> {
    let json: Result<Value, _> = serde_json::from_str(body);
    let message = json
        .as_ref()
        .ok()
        .and_then(|v| v.get("message"))
        .and_then(Value::as_str)
        .map(|m| format!(": {m}"))
        .unwrap_or_default();
    match status {
        200 => json.map_err(|e| format!("GET {url}: the answer is not JSON ({e})")),
        401 => Err(format!("GET {url}: 401{message} (the token was refused)")),
        403 | 429 if rate_limited => {
            let when = reset
                .and_then(|r| r.parse::<u64>().ok())
                .map(|at| format!(", it resets at {} UTC", clock(at)))
                .unwrap_or_default();
            Err(format!("GET {url}: {status}, the API rate limit is used up{when}"))
        }
        403 => {
            Err(format!("GET {url}: 403{message} (the job's token needs `pull-requests: read`)"))
        }
        404 => Err(format!(
            "GET {url}: 404{message} (no such pull request, or the token may not read it)"
        )),
        other => Err(format!("GET {url}: {other}{message}")),
    }
}

/// `HH:MM:SS` of a Unix time (UTC).
fn clock(unix: u64) -> String {
    let seconds = unix % 86_400;
    format!("{:02}:{:02}:{:02}", seconds / 3600, seconds / 60 % 60, seconds % 60)
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use std::io::{Read as _, Write as _};

    /// A local HTTP server that answers one request with `response` (status line,
    /// headers and body as GitHub sends them) and hands back the request it got.
    pub fn serve_once(response: String) -> (String, std::thread::JoinHandle<String>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let server = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = conn.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                request.extend_from_slice(&buf[..n]);
            }
            conn.write_all(response.as_bytes()).unwrap();
            String::from_utf8_lossy(&request).into_owned()
        });
        (base, server)
    }

    /// An HTTP/1.1 answer with a JSON body and extra header lines.
    pub fn answer(status: &str, headers: &[&str], body: &str) -> String {
        let mut text =
            format!("HTTP/1.1 {status}\r\ncontent-type: application/json; charset=utf-8\r\n");
        for header in headers {
            text.push_str(header);
            text.push_str("\r\n");
        }
        text.push_str(&format!(
            "content-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        ));
        text
    }

    #[test]
    fn a_200_answer_is_its_json_and_the_request_carries_the_token_and_api_version() {
        let (base, server) = serve_once(answer("200 OK", &[], r#"{"number":7,"labels":[]}"#));
        let json = Api::new(&base, "ghs_secret").get_json("/repos/o/r/pulls/7").unwrap();
        assert_eq!(json["number"], 7);
        let request = server.join().unwrap();
        assert!(request.starts_with("GET /repos/o/r/pulls/7 HTTP/1.1\r\n"), "{request}");
        let lower = request.to_ascii_lowercase();
        assert!(lower.contains("authorization: bearer ghs_secret\r\n"), "{request}");
        assert!(lower.contains("x-github-api-version: 2022-11-28\r\n"), "{request}");
        assert!(lower.contains("user-agent: "), "GitHub refuses requests without one");
    }

    #[test]
    fn https_without_the_tls_feature_is_a_clear_line_before_any_connection() {
        if cfg!(feature = "tls") {
            return;
        }
        let err = Api::new("https://api.github.invalid", "t").get_json("/x").unwrap_err();
        assert!(err.contains("built without TLS"), "{err}");
    }

    #[test]
    fn statuses_are_explained_in_one_line() {
        let url = "http://api/repos/o/r/pulls/7";
        let denied = r#"{"message":"Resource not accessible by integration","documentation_url":"https://docs.github.com/rest","status":"403"}"#;
        let err = explain(url, 403, false, None, denied).unwrap_err();
        assert!(
            err.contains("403: Resource not accessible") && err.contains("pull-requests: read")
        );
        let limited = explain(url, 429, true, Some("3661"), "{}").unwrap_err();
        assert!(limited.ends_with("429, the API rate limit is used up, it resets at 01:01:01 UTC"));
        let other = explain(url, 502, false, None, "<html>bad gateway</html>").unwrap_err();
        assert_eq!(other, "GET http://api/repos/o/r/pulls/7: 502");
        assert_eq!(clock(1_764_550_000), "00:46:40");
    }
}
