//! Service configuration: one generated TOML file (`TASKER_CONFIG_PATH`), with
//! `${VAR}` / `${VAR:-default}` placeholders substituted at load time from an explicit
//! allowlist of environment variables, then checked. Every error names the file and the
//! key, so a bad deployment fails at startup with one readable line.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// The environment variables a config file may reference. Anything else is a typo or a
/// secret that should not be pulled in implicitly, so it is rejected.
pub const ALLOWED_VARIABLES: &[&str] = &[
    "DATABASE_URL",
    "TASKER_WEB_BIND_ADDRESS",
    "TASKER_TEMPLATE_PATH",
    "TASKER_ENV",
    "TASKER_INSTANCE_ID",
    "TASKER_CONFIG_PATH",
];

/// The variable naming the config file every service loads.
pub const CONFIG_PATH_VARIABLE: &str = "TASKER_CONFIG_PATH";

/// A configuration problem, located by file and (when known) dotted key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "config {}", self.file.display())?;
        if let Some(key) = &self.key {
            write!(f, ", key `{key}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for ConfigError {}

#[derive(Debug, Clone, Deserialize)]
pub struct TaskerConfig {
    pub database: DatabaseConfig,
    pub queues: QueuesConfig,
    pub execution: ExecutionConfig,
    pub task_templates: TaskTemplatesConfig,
    /// Present in `orchestration-*.toml` and `complete-*.toml`.
    pub orchestration: Option<OrchestrationConfig>,
    /// Present in `worker-*.toml` and `complete-*.toml`.
    pub worker: Option<WorkerConfig>,
    #[serde(default)]
    pub mpsc_channels: MpscChannelsConfig,
    /// The file this configuration came from (for messages).
    #[serde(skip)]
    pub source: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    pub url: String,
    pub pool: PoolConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    pub max_connections: u32,
    pub min_connections: u32,
    pub acquire_timeout_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueuesConfig {
    pub namespace_queue_prefix: String,
    pub step_results_queue: String,
    pub visibility_timeout_seconds: i32,
    pub batch_size: i32,
    pub polling_interval_ms: u64,
    /// Deliveries of one message without a result before it is dead-lettered (archived)
    /// and its step fails: a step whose handler kills its worker must not loop forever.
    pub max_deliveries: i32,
}

impl QueuesConfig {
    /// The queue holding the steps of `namespace`.
    pub fn namespace_queue(&self, namespace: &str) -> String {
        format!("{}{namespace}_queue", self.namespace_queue_prefix)
    }

    pub fn polling_interval(&self) -> Duration {
        Duration::from_millis(self.polling_interval_ms)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecutionConfig {
    pub environment: String,
    /// Empty when `TASKER_INSTANCE_ID` is unset; see [`ExecutionConfig::instance_id`].
    #[serde(rename = "instance_id", default)]
    pub raw_instance_id: String,
    pub shutdown_timeout_ms: u64,
}

impl ExecutionConfig {
    pub fn instance_id(&self) -> Option<&str> {
        Some(self.raw_instance_id.as_str()).filter(|id| !id.is_empty())
    }

    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_millis(self.shutdown_timeout_ms)
    }

    /// How long in-flight work may finish after a stop request: the shutdown budget less
    /// what closing the pool and the runtime may take afterwards, so that the whole exit
    /// stays within `shutdown_timeout_ms`.
    pub fn drain_timeout(&self) -> Duration {
        self.shutdown_timeout().saturating_sub(POOL_CLOSE_TIMEOUT + RUNTIME_SHUTDOWN_TIMEOUT)
    }
}

/// The longest a service waits for its database pool to close when it stops.
pub const POOL_CLOSE_TIMEOUT: Duration = Duration::from_millis(200);

/// The longest a service binary waits for its tokio runtime's remaining tasks at exit.
pub const RUNTIME_SHUTDOWN_TIMEOUT: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskTemplatesConfig {
    pub path: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrchestrationConfig {
    pub web: WebConfig,
    pub backoff: BackoffConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebConfig {
    pub bind_address: String,
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
}

fn default_request_timeout_ms() -> u64 {
    30_000
}

impl WebConfig {
    /// The parsed bind address (validated at load, so this cannot fail afterwards).
    pub fn socket_addr(&self) -> SocketAddr {
        self.bind_address.parse().expect("bind_address is validated when the config is loaded")
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackoffConfig {
    pub base_ms: u64,
    pub max_ms: u64,
}

impl BackoffConfig {
    /// Delay before attempt `failed_attempts + 1`: base doubled per failure, capped.
    pub fn delay_after(&self, failed_attempts: u32) -> Duration {
        let exponent = failed_attempts.saturating_sub(1).min(30);
        let delay = self.base_ms.saturating_mul(1u64 << exponent);
        Duration::from_millis(delay.min(self.max_ms))
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerConfig {
    pub web: WebConfig,
    pub step_processing: StepProcessingConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepProcessingConfig {
    pub max_concurrent_steps: usize,
    pub step_timeout_ms: u64,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct MpscChannelsConfig {
    pub orchestration: Option<ChannelGroup>,
    pub worker: Option<ChannelGroup>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ChannelGroup {
    pub command_processor: CommandProcessorChannel,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CommandProcessorChannel {
    pub command_buffer_size: usize,
}

impl TaskerConfig {
    /// Loads the file named by `TASKER_CONFIG_PATH`, substituting from the process
    /// environment.
    pub fn load() -> Result<Self, ConfigError> {
        let Some(path) = std::env::var_os(CONFIG_PATH_VARIABLE) else {
            return Err(ConfigError {
                file: PathBuf::from(format!("${CONFIG_PATH_VARIABLE}")),
                key: None,
                message: format!(
                    "{CONFIG_PATH_VARIABLE} is not set: point it at a generated config, e.g. \
                     config/tasker/generated/orchestration-test.toml"
                ),
            });
        };
        Self::load_from(Path::new(&path), &|name| std::env::var(name).ok())
    }

    /// Loads `path`, looking variables up with `lookup` (the environment in services,
    /// a map in tests).
    pub fn load_from(
        path: &Path,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|err| ConfigError {
            file: path.to_path_buf(),
            key: None,
            message: format!("cannot read the file: {err}"),
        })?;
        Self::parse(&text, path, lookup)
    }

    /// Parses config text; `path` is only used in messages.
    pub fn parse(
        text: &str,
        path: &Path,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let error = |key: Option<String>, message: String| ConfigError {
            file: path.to_path_buf(),
            key,
            message,
        };
        let mut table: toml::Table = toml::from_str(text)
            .map_err(|err| error(None, format!("invalid TOML: {}", err.message())))?;
        let mut placeholders = BTreeMap::new();
        substitute_table(&mut table, "", lookup, &mut placeholders)
            .map_err(|(key, message)| error(Some(key), message))?;
        // serde quotes a value of the wrong type in its message: a database URL at the
        // wrong key must not take its password into the error line.
        let mut secrets = Vec::new();
        collect_urls_with_passwords(&toml::Value::Table(table.clone()), &mut secrets);
        let mut config: TaskerConfig = serde_path_to_error::deserialize(toml::Value::Table(table))
            .map_err(|err| {
                let key = err.path().to_string();
                let key = (key != ".").then_some(key);
                // `message()`: without toml's own "in `key`" line, the key is named already.
                let message = err.into_inner().message().to_string();
                let message = secrets.iter().fold(message, |message, url| {
                    message.replace(url, &crate::redact_database_url(url))
                });
                error(key, message)
            })?;
        config.source = path.to_path_buf();
        config.validate().map_err(|(key, message)| {
            let message = match placeholders.get(&key) {
                Some(raw) => format!("{message} (substituted from `{raw}`)"),
                None => message,
            };
            error(Some(key), message)
        })?;
        Ok(config)
    }

    /// The orchestration section, or an error saying which file lacks it.
    pub fn orchestration(&self) -> Result<&OrchestrationConfig, ConfigError> {
        self.orchestration.as_ref().ok_or_else(|| ConfigError {
            file: self.source.clone(),
            key: Some("orchestration".into()),
            message: "section missing: the orchestration server needs \
                      orchestration-<env>.toml or complete-<env>.toml"
                .into(),
        })
    }

    /// The worker section, or an error saying which file lacks it.
    pub fn worker(&self) -> Result<&WorkerConfig, ConfigError> {
        self.worker.as_ref().ok_or_else(|| ConfigError {
            file: self.source.clone(),
            key: Some("worker".into()),
            message: "section missing: workers need worker-<env>.toml or complete-<env>.toml"
                .into(),
        })
    }

    /// The template directory, absolute (relative paths resolve from the working
    /// directory).
    pub fn template_dir(&self) -> PathBuf {
        let path = &self.task_templates.path;
        if path.is_absolute() {
            path.clone()
        } else {
            std::env::current_dir().map(|cwd| cwd.join(path)).unwrap_or_else(|_| path.clone())
        }
    }

    fn validate(&self) -> Result<(), (String, String)> {
        fn check(ok: bool, key: &str, message: impl Into<String>) -> Result<(), (String, String)> {
            if ok { Ok(()) } else { Err((key.to_string(), message.into())) }
        }
        let url = &self.database.url;
        check(
            url.starts_with("postgres://") || url.starts_with("postgresql://"),
            "database.url",
            format!("expected a postgres:// URL, got `{}`", crate::redact_database_url(url)),
        )?;
        let pool = &self.database.pool;
        check(
            pool.max_connections >= 2,
            "database.pool.max_connections",
            "must be at least 2 (one connection listens for notifications)",
        )?;
        check(
            pool.min_connections <= pool.max_connections,
            "database.pool.min_connections",
            "must not exceed database.pool.max_connections",
        )?;
        check(pool.acquire_timeout_ms > 0, "database.pool.acquire_timeout_ms", "must be positive")?;
        let queues = &self.queues;
        for (key, name) in [
            ("queues.namespace_queue_prefix", &queues.namespace_queue_prefix),
            ("queues.step_results_queue", &queues.step_results_queue),
        ] {
            check(
                name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') && name.len() < 40,
                key,
                format!(
                    "`{name}` is not a valid queue name (ASCII letters, digits, `_`, < 40 chars)"
                ),
            )?;
        }
        check(
            !queues.step_results_queue.is_empty(),
            "queues.step_results_queue",
            "must not be empty",
        )?;
        check(
            queues.visibility_timeout_seconds >= 1,
            "queues.visibility_timeout_seconds",
            "must be at least 1",
        )?;
        check(queues.batch_size >= 1, "queues.batch_size", "must be at least 1")?;
        check(queues.polling_interval_ms >= 1, "queues.polling_interval_ms", "must be at least 1")?;
        check(queues.max_deliveries >= 1, "queues.max_deliveries", "must be at least 1")?;
        check(
            !self.execution.environment.is_empty(),
            "execution.environment",
            "must not be empty",
        )?;
        check(
            !self.task_templates.path.as_os_str().is_empty(),
            "task_templates.path",
            "must not be empty",
        )?;
        if let Some(orchestration) = &self.orchestration {
            check_bind_address(&orchestration.web, "orchestration.web.bind_address")?;
            let backoff = &orchestration.backoff;
            check(
                backoff.base_ms <= backoff.max_ms,
                "orchestration.backoff.base_ms",
                "must not exceed orchestration.backoff.max_ms",
            )?;
        }
        if let Some(worker) = &self.worker {
            check_bind_address(&worker.web, "worker.web.bind_address")?;
            check(
                worker.step_processing.max_concurrent_steps >= 1,
                "worker.step_processing.max_concurrent_steps",
                "must be at least 1",
            )?;
            check(
                worker.step_processing.step_timeout_ms >= 1,
                "worker.step_processing.step_timeout_ms",
                "must be at least 1",
            )?;
        }
        Ok(())
    }
}

fn check_bind_address(web: &WebConfig, key: &str) -> Result<(), (String, String)> {
    web.bind_address.parse::<SocketAddr>().map(|_| ()).map_err(|_| {
        (
            key.to_string(),
            format!(
                "`{}` is not a socket address; expected IP:PORT such as 127.0.0.1:8080",
                web.bind_address
            ),
        )
    })
}

/// Every string in `value` that [`crate::redact_database_url`] would change.
fn collect_urls_with_passwords(value: &toml::Value, found: &mut Vec<String>) {
    match value {
        toml::Value::String(text) if crate::redact_database_url(text) != *text => {
            found.push(text.clone())
        }
        toml::Value::Table(table) => {
            table.values().for_each(|value| collect_urls_with_passwords(value, found))
        }
        toml::Value::Array(items) => {
            items.iter().for_each(|value| collect_urls_with_passwords(value, found))
        }
        _ => {}
    }
}

fn substitute_table(
    table: &mut toml::Table,
    prefix: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    placeholders: &mut BTreeMap<String, String>,
) -> Result<(), (String, String)> {
    for (name, value) in table.iter_mut() {
        let key = if prefix.is_empty() { name.clone() } else { format!("{prefix}.{name}") };
        substitute_value(value, key, lookup, placeholders)?;
    }
    Ok(())
}

fn substitute_value(
    value: &mut toml::Value,
    key: String,
    lookup: &dyn Fn(&str) -> Option<String>,
    placeholders: &mut BTreeMap<String, String>,
) -> Result<(), (String, String)> {
    match value {
        toml::Value::String(text) if text.contains("${") => {
            let substituted = substitute(text, lookup).map_err(|message| (key.clone(), message))?;
            placeholders.insert(key, std::mem::replace(text, substituted));
        }
        toml::Value::Table(inner) => substitute_table(inner, &key, lookup, placeholders)?,
        toml::Value::Array(items) => {
            for (index, item) in items.iter_mut().enumerate() {
                substitute_value(item, format!("{key}[{index}]"), lookup, placeholders)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// Replaces `${VAR}` (required) and `${VAR:-default}` (default when unset or empty) in
/// `text`. Only [`ALLOWED_VARIABLES`] may appear.
pub fn substitute(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return Err(format!("unterminated placeholder in `{text}`"));
        };
        let inner = &after[..end];
        let (name, default) = match inner.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (inner, None),
        };
        if !ALLOWED_VARIABLES.contains(&name) {
            return Err(format!(
                "unknown placeholder `${{{name}}}`; allowed variables: {}",
                ALLOWED_VARIABLES.join(", ")
            ));
        }
        let value = lookup(name).filter(|v| !v.is_empty());
        match (value, default) {
            (Some(value), _) => out.push_str(&value),
            (None, Some(default)) => out.push_str(default),
            (None, None) => {
                return Err(format!(
                    "`${{{name}}}` has no default and {name} is not set: export {name}"
                ));
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: BTreeMap<String, String> =
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |name| map.get(name).cloned()
    }

    const MINIMAL: &str = r#"
[database]
url = "${DATABASE_URL}"
[database.pool]
max_connections = 5
min_connections = 1
acquire_timeout_ms = 100
[queues]
namespace_queue_prefix = "worker_"
step_results_queue = "results"
visibility_timeout_seconds = 5
batch_size = 10
polling_interval_ms = 100
max_deliveries = 3
[execution]
environment = "${TASKER_ENV:-test}"
instance_id = "${TASKER_INSTANCE_ID:-}"
shutdown_timeout_ms = 2000
[task_templates]
path = "${TASKER_TEMPLATE_PATH:-config/tasks}"
[orchestration.web]
bind_address = "${TASKER_WEB_BIND_ADDRESS:-0.0.0.0:8080}"
[orchestration.backoff]
base_ms = 10
max_ms = 100
"#;

    fn parse(text: &str, vars: &[(&str, &str)]) -> Result<TaskerConfig, ConfigError> {
        TaskerConfig::parse(text, Path::new("test.toml"), &env(vars))
    }

    #[test]
    fn substitutes_values_and_defaults() {
        let lookup = env(&[("TASKER_ENV", "ci")]);
        assert_eq!(substitute("a-${TASKER_ENV}-b", &lookup).unwrap(), "a-ci-b");
        assert_eq!(substitute("${TASKER_INSTANCE_ID:-none}", &lookup).unwrap(), "none");
        assert_eq!(substitute("plain", &lookup).unwrap(), "plain");
    }

    #[test]
    fn rejects_unknown_and_missing_variables() {
        let lookup = env(&[]);
        let err = substitute("${HOME}", &lookup).unwrap_err();
        assert!(err.contains("unknown placeholder `${HOME}`"), "{err}");
        let err = substitute("${DATABASE_URL}", &lookup).unwrap_err();
        assert!(err.contains("export DATABASE_URL"), "{err}");
        let err = substitute("${DATABASE_URL", &lookup).unwrap_err();
        assert!(err.contains("unterminated"), "{err}");
    }

    #[test]
    fn loads_and_reads_instance_id() {
        let config = parse(
            MINIMAL,
            &[
                ("DATABASE_URL", "postgres://u@localhost/db"),
                ("TASKER_INSTANCE_ID", "abc"),
                ("TASKER_WEB_BIND_ADDRESS", "127.0.0.1:4000"),
            ],
        )
        .unwrap();
        assert_eq!(config.execution.instance_id(), Some("abc"));
        assert_eq!(config.execution.environment, "test");
        let web = &config.orchestration().unwrap().web;
        assert_eq!(web.socket_addr().port(), 4000);
        assert!(config.worker().is_err());
    }

    #[test]
    fn errors_name_file_key_and_placeholder() {
        let err = parse(
            MINIMAL,
            &[
                ("DATABASE_URL", "postgres://u@localhost/db"),
                ("TASKER_WEB_BIND_ADDRESS", "localhost"),
            ],
        )
        .unwrap_err();
        assert_eq!(err.key.as_deref(), Some("orchestration.web.bind_address"));
        let line = err.to_string();
        assert!(line.starts_with("config test.toml, key `orchestration.web.bind_address`"));
        assert!(line.contains("TASKER_WEB_BIND_ADDRESS"), "{line}");

        let err = parse(MINIMAL, &[]).unwrap_err();
        assert_eq!(err.key.as_deref(), Some("database.url"));

        let err = parse(
            &MINIMAL.replace("batch_size = 10", "batch_size = \"ten\""),
            &[("DATABASE_URL", "postgres://u@h/d")],
        )
        .unwrap_err();
        assert_eq!(err.key.as_deref(), Some("queues.batch_size"), "{err}");
        assert_eq!(err.to_string().lines().count(), 1, "{err}");

        let err = parse(
            &MINIMAL.replace("batch_size = 10", "batch_size = 10\nbatchsize = 3"),
            &[("DATABASE_URL", "postgres://u@h/d")],
        )
        .unwrap_err();
        assert!(err.to_string().contains("batchsize"), "{err}");
    }

    #[test]
    fn database_url_is_redacted_in_errors() {
        let err = parse(MINIMAL, &[("DATABASE_URL", "mysql://u:secret@h/d")]).unwrap_err();
        assert!(!err.to_string().contains("secret"), "{err}");

        // A URL at a key of another type: serde quotes the value in its message.
        let text = MINIMAL.replace("max_connections = 5", "max_connections = \"${DATABASE_URL}\"");
        let err = parse(&text, &[("DATABASE_URL", "postgres://u:secret@h/d")]).unwrap_err();
        assert_eq!(err.key.as_deref(), Some("database.pool.max_connections"), "{err}");
        assert!(err.to_string().contains("postgres://u:***@h/d"), "{err}");
        assert!(!err.to_string().contains("secret"), "{err}");
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let backoff = BackoffConfig { base_ms: 50, max_ms: 500 };
        assert_eq!(backoff.delay_after(1), Duration::from_millis(50));
        assert_eq!(backoff.delay_after(2), Duration::from_millis(100));
        assert_eq!(backoff.delay_after(10), Duration::from_millis(500));
    }

    /// The generated files are what services really load: every one must pass the
    /// loader with the variables CI sets.
    #[test]
    fn generated_test_configs_load() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let vars = env(&[
            ("DATABASE_URL", "postgres://tasker@127.0.0.1:5999/tasker_test"),
            ("TASKER_WEB_BIND_ADDRESS", "127.0.0.1:0"),
            ("TASKER_INSTANCE_ID", "unit-test"),
        ]);
        for (file, orchestration, worker) in [
            ("orchestration-test.toml", true, false),
            ("worker-test.toml", false, true),
            ("complete-test.toml", true, true),
        ] {
            let path = root.join("config/tasker/generated").join(file);
            let config = TaskerConfig::load_from(&path, &vars)
                .unwrap_or_else(|err| panic!("{err} (run `cargo xtask config --all`)"));
            assert_eq!(config.execution.environment, "test", "{file}");
            assert_eq!(config.execution.instance_id(), Some("unit-test"));
            assert_eq!(config.orchestration.is_some(), orchestration, "{file}");
            assert_eq!(config.worker.is_some(), worker, "{file}");
            assert_eq!(config.queues.visibility_timeout_seconds, 5, "{file}");
            assert_eq!(config.queues.max_deliveries, 2, "{file}");
        }
    }
}
