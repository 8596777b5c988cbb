//! A stand-in service for xtask's reliability tests: it behaves like the real services
//! towards xtask (bind address and instance id from the environment, `GET /health` with
//! an identity) and misbehaves on request. Not used outside the tests.
//!
//! `fake-service serve`   serve /health as $FAKE_IDENTITY (default tasker-orchestration);
//!                        FAKE_CRASH=1 exits with code 3 at start, FAKE_DELAY_MS delays the bind,
//!                        FAKE_IGNORE_TERM=1 ignores SIGTERM, FAKE_EXIT_AFTER_MS exits (code 7)
//!                        that long after start, FAKE_PORT_TAKEN_ONCE=FILE fails to bind
//!                        ("Address already in use") the first time (until FILE exists).
//! `fake-service migrate` checks that $DATABASE_URL accepts TCP connections, then exits.
//! `fake-service foreign PORT` answers every request with a 200 that is not ours.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_default();
    match mode.as_str() {
        "serve" => serve(),
        "migrate" => migrate(),
        "foreign" => {
            let port: u16 =
                std::env::args().nth(2).and_then(|p| p.parse().ok()).expect("foreign PORT");
            let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind");
            answer_forever(listener, |_| {
                r#"{"status":"ok","service":"something-else"}"#.to_string()
            });
        }
        other => {
            eprintln!("fake-service: unknown mode `{other}`");
            std::process::exit(64);
        }
    }
}

fn serve() {
    let env = |k: &str| std::env::var(k).unwrap_or_default();
    println!(
        "fake-service starting as {} (instance {})",
        env("FAKE_IDENTITY"),
        env("TASKER_INSTANCE_ID")
    );
    if env("FAKE_CRASH") == "1" {
        eprintln!("fake-service: configured to crash at start");
        std::process::exit(3);
    }
    let taken_once = env("FAKE_PORT_TAKEN_ONCE");
    if !taken_once.is_empty() && std::fs::metadata(&taken_once).is_err() {
        let _ = std::fs::write(&taken_once, "");
        eprintln!(
            "fake-service: cannot bind {}: Address already in use (os error 98)",
            env("TASKER_WEB_BIND_ADDRESS")
        );
        std::process::exit(4);
    }
    if env("FAKE_IGNORE_TERM") == "1" {
        // SAFETY: setting a signal disposition.
        unsafe { libc::signal(libc::SIGTERM, libc::SIG_IGN) };
    }
    if let Ok(ms) = env("FAKE_DELAY_MS").parse::<u64>() {
        std::thread::sleep(Duration::from_millis(ms));
    }
    if let Ok(ms) = env("FAKE_EXIT_AFTER_MS").parse::<u64>() {
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(ms));
            eprintln!("fake-service: configured to exit after {ms} ms");
            std::process::exit(7);
        });
    }
    let addr = env("TASKER_WEB_BIND_ADDRESS");
    let listener = TcpListener::bind(&addr).unwrap_or_else(|e| {
        eprintln!("fake-service: cannot bind {addr}: {e}");
        std::process::exit(4)
    });
    let identity = if env("FAKE_IDENTITY").is_empty() {
        "tasker-orchestration".to_string()
    } else {
        env("FAKE_IDENTITY")
    };
    let instance = env("TASKER_INSTANCE_ID");
    answer_forever(listener, move |_| {
        format!(r#"{{"status":"healthy","service":"{identity}","instance_id":"{instance}"}}"#)
    });
}

fn answer_forever(listener: TcpListener, body: impl Fn(&str) -> String + Send + Sync + 'static) {
    let body = std::sync::Arc::new(body);
    for conn in listener.incoming().flatten() {
        let body = body.clone();
        std::thread::spawn(move || {
            let mut conn = conn;
            let mut request = Vec::new();
            let mut buf = [0u8; 2048];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                match conn.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => request.extend_from_slice(&buf[..n]),
                }
            }
            let request = String::from_utf8_lossy(&request).to_string();
            let text = body(&request);
            let _ = write!(
                conn,
                "HTTP/1.0 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{text}",
                text.len()
            );
        });
    }
}

fn migrate() {
    let url = std::env::var("DATABASE_URL").expect("DATABASE_URL is not set");
    let parts =
        xtask::services::pg_probe::parse_url(&url).expect("DATABASE_URL is a postgres:// URL");
    let hostport = format!("{}:{}", parts.host, parts.port);
    match TcpStream::connect(&hostport) {
        Ok(_) => println!("fake-service: database at {hostport} accepts connections"),
        Err(e) => {
            eprintln!("fake-service: cannot reach {hostport}: {e}");
            std::process::exit(5);
        }
    }
}
