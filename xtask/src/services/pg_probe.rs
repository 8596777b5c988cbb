//! The start of PostgreSQL's wire protocol, enough to know whether a server accepts
//! connections (no password is sent: a server asking for one is up) and to send one
//! simple query. Both backends wait for their database with it, and a `DATABASE_URL`
//! given by the user is checked with it before anything starts.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use crate::sys::secrets::redact;

/// Checks that the server in `url` answers (a protocol startup: no password is sent,
/// so a server asking for one counts as reachable). The error is one line for the user.
pub fn check_reachable(url: &str) -> anyhow::Result<()> {
    let shown = redact(url);
    let Some(target) = parse_url(url) else {
        crate::user_error!(
            "DATABASE_URL `{shown}` is not a postgres://user@host:port/database URL"
        );
    };
    let addrs: Vec<SocketAddr> = match (target.host.as_str(), target.port).to_socket_addrs() {
        Ok(addrs) => addrs.collect(),
        Err(err) => crate::user_error!(
            "DATABASE_URL `{shown}` is not reachable: cannot resolve `{}`: {err}; start that server or unset DATABASE_URL to use a throwaway one",
            target.host
        ),
    };
    let mut last = String::from("no address");
    for addr in addrs {
        match handshake(addr, &target.user, &target.database, Duration::from_secs(3)) {
            Ok(Handshake::Ready | Handshake::NeedsPassword) => return Ok(()),
            Ok(Handshake::Rejected { code, message }) if code == "3D000" => crate::user_error!(
                "DATABASE_URL `{shown}`: {message}; create it or point DATABASE_URL at an existing database"
            ),
            Ok(Handshake::Rejected { message, .. }) => last = message,
            Err(err) => last = err.to_string(),
        }
    }
    crate::user_error!(
        "DATABASE_URL `{shown}` is not reachable: {last}; start that server or unset DATABASE_URL to use a throwaway one"
    )
}

/// `DATABASE_URL` when it is set (and not empty), checked to be reachable.
pub fn given_url() -> anyhow::Result<Option<String>> {
    let Some(url) = std::env::var("DATABASE_URL").ok().filter(|u| !u.is_empty()) else {
        return Ok(None);
    };
    check_reachable(&url)?;
    Ok(Some(url))
}

#[derive(Debug, PartialEq, Eq)]
pub struct UrlParts {
    pub user: String,
    pub host: String,
    pub port: u16,
    pub database: String,
}

/// The parts of a `postgres://` URL needed to knock on the server's door.
pub fn parse_url(url: &str) -> Option<UrlParts> {
    let rest = url.strip_prefix("postgres://").or_else(|| url.strip_prefix("postgresql://"))?;
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let user = userinfo
        .map(|u| u.split(':').next().unwrap_or(""))
        .filter(|u| !u.is_empty())
        .unwrap_or("postgres");
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || hostport.starts_with('[') => (h, p.parse().ok()?),
        _ => (hostport, 5432),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return None;
    }
    let database = path.split('?').next().unwrap_or("");
    let database = if database.is_empty() { user } else { database };
    Some(UrlParts {
        user: user.to_string(),
        host: host.to_string(),
        port,
        database: database.to_string(),
    })
}

/// Whether a server on `addr` is up and past its own startup: it answers a startup
/// message with ReadyForQuery or a password request (no password is sent).
pub fn accepts_connections(addr: SocketAddr, user: &str, database: &str) -> bool {
    matches!(
        handshake(addr, user, database, Duration::from_millis(500)),
        Ok(Handshake::Ready | Handshake::NeedsPassword)
    )
}

/// How a server answered a startup message.
#[derive(Debug)]
pub enum Handshake {
    Ready,
    NeedsPassword,
    Rejected { code: String, message: String },
}

/// Speaks the start of the PostgreSQL wire protocol over TCP: a StartupMessage, then
/// reads until ReadyForQuery, an authentication request or an error.
pub fn handshake(
    addr: SocketAddr,
    user: &str,
    database: &str,
    timeout: Duration,
) -> std::io::Result<Handshake> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let result = startup(&mut stream, user, database);
    if let Ok(Handshake::Ready) = result {
        terminate(&mut stream);
    }
    result
}

/// Sends a StartupMessage and reads until ReadyForQuery, an authentication request or
/// an error.
pub fn startup(
    stream: &mut (impl Read + Write),
    user: &str,
    database: &str,
) -> std::io::Result<Handshake> {
    let mut body = Vec::new();
    body.extend_from_slice(&196608i32.to_be_bytes()); // protocol 3.0
    for (key, value) in [("user", user), ("database", database)] {
        body.extend_from_slice(key.as_bytes());
        body.push(0);
        body.extend_from_slice(value.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut message = ((body.len() + 4) as i32).to_be_bytes().to_vec();
    message.extend_from_slice(&body);
    stream.write_all(&message)?;
    loop {
        let (kind, payload) = read_message(stream)?;
        match kind {
            b'R' => {
                let code = payload.get(..4).map(|b| i32::from_be_bytes(b.try_into().unwrap()));
                if code != Some(0) {
                    return Ok(Handshake::NeedsPassword);
                }
            }
            b'Z' => return Ok(Handshake::Ready),
            b'E' => {
                let (code, message) = error_fields(&payload);
                return Ok(Handshake::Rejected { code, message });
            }
            _ => {} // ParameterStatus, BackendKeyData, notices
        }
    }
}

fn read_message(stream: &mut impl Read) -> std::io::Result<(u8, Vec<u8>)> {
    let mut header = [0u8; 5];
    stream.read_exact(&mut header)?;
    let len = i32::from_be_bytes(header[1..5].try_into().unwrap());
    if !(4..=1 << 20).contains(&len) {
        return Err(std::io::Error::other("not a PostgreSQL server"));
    }
    let mut payload = vec![0u8; len as usize - 4];
    stream.read_exact(&mut payload)?;
    Ok((header[0], payload))
}

/// The SQLSTATE code and message of an ErrorResponse.
fn error_fields(payload: &[u8]) -> (String, String) {
    let mut code = String::new();
    let mut message = String::new();
    for field in payload.split(|b| *b == 0).filter(|f| !f.is_empty()) {
        let text = String::from_utf8_lossy(&field[1..]).to_string();
        match field[0] {
            b'C' => code = text,
            b'M' => message = text,
            _ => {}
        }
    }
    (code, message)
}

/// Sends one simple query on a connection past its startup and reads until the server is
/// ready again; the server's error message when it refused the query.
pub fn query(stream: &mut (impl Read + Write), sql: &str) -> std::io::Result<Result<(), String>> {
    let sql = format!("{sql}\0");
    let mut message = vec![b'Q'];
    message.extend_from_slice(&((sql.len() + 4) as i32).to_be_bytes());
    message.extend_from_slice(sql.as_bytes());
    stream.write_all(&message)?;
    let mut error = None;
    loop {
        match read_message(stream)? {
            (b'E', payload) => error = Some(error_fields(&payload).1),
            (b'Z', _) => break,
            _ => {}
        }
    }
    Ok(match error {
        Some(message) => Err(message),
        None => Ok(()),
    })
}

/// Ends a session politely (Terminate).
pub fn terminate(stream: &mut impl Write) {
    let _ = stream.write_all(&[b'X', 0, 0, 0, 4]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_url_fills_defaults() {
        assert_eq!(
            parse_url("postgres://app:pw@db.example:6543/tasker?sslmode=disable"),
            Some(UrlParts {
                user: "app".into(),
                host: "db.example".into(),
                port: 6543,
                database: "tasker".into()
            })
        );
        assert_eq!(
            parse_url("postgresql://localhost"),
            Some(UrlParts {
                user: "postgres".into(),
                host: "localhost".into(),
                port: 5432,
                database: "postgres".into()
            })
        );
        assert_eq!(parse_url("mysql://x"), None);
    }

    #[test]
    fn a_closed_port_is_unreachable_with_a_redacted_message() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let err =
            check_reachable(&format!("postgres://u:hunter2@127.0.0.1:{port}/db")).unwrap_err();
        let text = err.to_string();
        assert!(err.downcast_ref::<crate::sys::error::UserError>().is_some());
        assert!(text.contains("is not reachable"), "{text}");
        assert!(text.contains("u:***@") && !text.contains("hunter2"), "{text}");
    }
}
