//! What every service shares: configuration ([`config`]), the database pool and
//! embedded migrations ([`db`]), task templates ([`templates`]), queue messages
//! ([`messages`]), logging and shutdown signals, and support for database tests
//! ([`testing`]).

pub mod config;
pub mod db;
pub mod messages;
pub mod templates;
pub mod testing;

pub use config::{ConfigError, TaskerConfig};

/// `url` with any password replaced by `***` (in the userinfo and in a `password=` query
/// parameter, both of which PostgreSQL URLs accept), for messages and logs.
pub fn redact_database_url(url: &str) -> String {
    // The userinfo first: a `?` inside a password must not be taken for the query.
    let redacted = redact_userinfo_password(url);
    let Some((base, query)) = redacted.split_once('?') else {
        return redacted;
    };
    let parameters: Vec<&str> = query
        .split('&')
        .map(|parameter| match parameter.split_once('=') {
            Some((key, _)) if key.eq_ignore_ascii_case("password") => "password=***",
            _ => parameter,
        })
        .collect();
    format!("{base}?{}", parameters.join("&"))
}

fn redact_userinfo_password(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let authority_start = scheme_end + 3;
    let authority_end = url[authority_start..].find('/').map_or(url.len(), |i| authority_start + i);
    let authority = &url[authority_start..authority_end];
    let Some(at) = authority.rfind('@') else {
        return url.to_string();
    };
    let userinfo = &authority[..at];
    match userinfo.find(':') {
        Some(colon) => format!(
            "{}{}:***{}",
            &url[..authority_start],
            &userinfo[..colon],
            &url[authority_start + at..]
        ),
        None => url.to_string(),
    }
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx::postgres::notice=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// Installs the SIGTERM and SIGINT handlers at once and returns a future that resolves on
/// the first of them. Call it before any slow startup work (inside the tokio runtime) and
/// race that work against it: a signal during startup is then a clean exit, not a death
/// by the default disposition.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("installing the SIGINT handler");
    async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received, shutting down"),
            _ = int.recv() => tracing::info!("SIGINT received, shutting down"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::redact_database_url;

    #[test]
    fn redacts_passwords_only() {
        assert_eq!(
            redact_database_url("postgres://u:s3cret@h:5/db?x=1"),
            "postgres://u:***@h:5/db?x=1"
        );
        assert_eq!(redact_database_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_database_url("nonsense"), "nonsense");
        assert_eq!(
            redact_database_url("postgres://u@h/db?sslmode=off&Password=s3cret&x=1"),
            "postgres://u@h/db?sslmode=off&password=***&x=1"
        );
        assert_eq!(
            redact_database_url("postgres://u:p@h/db?password=s3cret"),
            "postgres://u:***@h/db?password=***"
        );
        assert_eq!(redact_database_url("postgres://u:a?b@h/db"), "postgres://u:***@h/db");
    }
}
