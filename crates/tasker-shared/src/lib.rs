//! What every service shares: configuration ([`config`]), the database pool and
//! embedded migrations ([`db`]), task templates ([`templates`]), queue messages
//! ([`messages`]), logging and shutdown signals, and support for database tests
//! ([`testing`]).

pub mod config;
pub mod db;
pub mod messages;
pub mod pgmq_schema;
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

/// The filter when `RUST_LOG` is unset, empty or not understood.
const DEFAULT_LOG_FILTER: &str = "info,sqlx::postgres::notice=warn";

/// The log filter of a `RUST_LOG` value: a default level and `target=level` directives,
/// comma-separated (`info`, `warn,tasker_worker=debug`). Parsed by `Targets`, which
/// needs no regular-expression engine (EnvFilter's span and field filters would pull one
/// into every build).
pub fn log_filter(rust_log: Option<&str>) -> tracing_subscriber::filter::Targets {
    rust_log
        .map(str::trim)
        .filter(|value| !value.is_empty())
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| DEFAULT_LOG_FILTER.parse().expect("the default filter parses"))
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`).
pub fn init_tracing() {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter = log_filter(std::env::var("RUST_LOG").ok().as_deref());
    let output = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = tracing_subscriber::registry().with(output).with(filter).try_init();
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
    use super::{log_filter, redact_database_url};

    #[test]
    fn rust_log_keeps_its_documented_syntax_without_a_regex_engine() {
        use tracing::Level;
        use tracing::level_filters::LevelFilter;
        let filter = log_filter(Some("warn,tasker_worker=debug"));
        assert!(filter.would_enable("tasker_worker::runtime", &Level::DEBUG));
        assert!(!filter.would_enable("tasker_orchestration", &Level::INFO));
        assert!(filter.would_enable("tasker_orchestration", &Level::WARN));
        assert_eq!(log_filter(Some("info")).default_level(), Some(LevelFilter::INFO));
        // Unset, empty or not understood: the default, which quiets sqlx's notices.
        for value in [None, Some(""), Some("not a =filter= at all")] {
            let filter = log_filter(value);
            assert!(filter.would_enable("tasker_shared", &Level::INFO), "{value:?}");
            assert!(!filter.would_enable("sqlx::postgres::notice", &Level::INFO), "{value:?}");
        }
    }

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
