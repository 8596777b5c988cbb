//! Support for database tests: each test gets its own freshly migrated database on the
//! server named by `DATABASE_URL`, so tests run in parallel against any server.

use std::str::FromStr;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool};

pub const MISSING_DATABASE_URL: &str = "DATABASE_URL is not set: run `cargo xtask test` \
     (starts a throwaway PostgreSQL) or export DATABASE_URL";

/// The server URL for database tests; panics with the agreed message when unset.
pub fn database_url() -> String {
    std::env::var("DATABASE_URL").ok().filter(|url| !url.is_empty()).expect(MISSING_DATABASE_URL)
}

/// What database tests vary in [`TestDatabase::config_text`].
#[derive(Debug, Clone)]
pub struct TestConfig {
    pub visibility_timeout_seconds: i32,
    /// The fallback poll; set it beyond a test's deadline to prove the NOTIFY wake-ups.
    pub polling_interval_ms: u64,
    pub step_timeout_ms: u64,
    /// `queues.max_deliveries`.
    pub max_deliveries: i32,
}

/// A database created for one test; dropped by [`TestDatabase::drop_database`].
pub struct TestDatabase {
    pub name: String,
    pub url: String,
    pub pool: PgPool,
    server: PgConnectOptions,
}

impl TestDatabase {
    /// Creates `tasker_test_<random>` on the `DATABASE_URL` server and migrates it
    /// (PGMQ + this project's schema).
    pub async fn create() -> TestDatabase {
        let db = Self::create_empty().await;
        crate::db::migrate(&db.pool).await.expect("migrating the test database");
        db
    }

    /// Like [`TestDatabase::create`] without migrating.
    pub async fn create_empty() -> TestDatabase {
        let server =
            PgConnectOptions::from_str(&database_url()).expect("DATABASE_URL is not a valid URL");
        let name = format!("tasker_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = server.connect().await.expect("connecting to DATABASE_URL");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .expect("creating a test database");
        let options = server.clone().database(&name);
        let url = options.to_url_lossy().to_string();
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await
            .expect("connecting to the test database");
        TestDatabase { name, url, pool, server }
    }

    /// A complete service config (orchestration and worker sections) for this database,
    /// with the repository's task templates. Bind addresses default to `127.0.0.1:0`
    /// (`TASKER_WEB_BIND_ADDRESS` overrides the worker's), the instance id comes from
    /// `TASKER_INSTANCE_ID`; `settings` holds what tests vary.
    pub fn config_text(&self, settings: &TestConfig) -> String {
        let TestConfig {
            visibility_timeout_seconds,
            polling_interval_ms,
            step_timeout_ms,
            max_deliveries,
        } = settings;
        let templates = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/tasks");
        format!(
            r#"
[database]
url = "{url}"
[database.pool]
max_connections = 4
min_connections = 1
acquire_timeout_ms = 10000
[queues]
namespace_queue_prefix = "worker_"
step_results_queue = "orchestration_step_results"
visibility_timeout_seconds = {visibility_timeout_seconds}
batch_size = 10
polling_interval_ms = {polling_interval_ms}
max_deliveries = {max_deliveries}
[execution]
environment = "test"
instance_id = "${{TASKER_INSTANCE_ID:-}}"
shutdown_timeout_ms = 2000
[task_templates]
path = "{templates}"
[orchestration.web]
bind_address = "127.0.0.1:0"
[orchestration.backoff]
base_ms = 10
max_ms = 100
[worker.web]
bind_address = "${{TASKER_WEB_BIND_ADDRESS:-127.0.0.1:0}}"
[worker.step_processing]
max_concurrent_steps = 4
step_timeout_ms = {step_timeout_ms}
"#,
            url = self.url,
            templates = templates.display(),
        )
    }

    /// [`TestDatabase::config_text`] written to a file named after the database in the
    /// temp directory (for service processes); removed by [`TestDatabase::drop_database`].
    pub fn write_config(&self, settings: &TestConfig) -> std::path::PathBuf {
        let path = self.config_path();
        std::fs::write(&path, self.config_text(settings)).expect("writing the test config");
        path
    }

    fn config_path(&self) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("{}.toml", self.name))
    }

    /// Closes the pool and drops the database (best effort: a failure only leaks a
    /// database on a throwaway server).
    pub async fn drop_database(self) {
        let _ = std::fs::remove_file(self.config_path());
        self.pool.close().await;
        if let Ok(mut admin) = self.server.connect().await {
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name))
                .execute(&mut admin)
                .await;
        }
    }
}

/// A process a test started; killed on drop if still running (e.g. the test failed).
pub struct ChildProcess(pub std::process::Child);

impl Drop for ChildProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Sends `signal` (`"TERM"`, `"INT"`, ...) to the process `pid` with kill(1); panics if
/// that fails.
pub fn send_signal(pid: u32, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([format!("-{signal}"), pid.to_string()])
        .status()
        .expect("running kill");
    assert!(status.success(), "kill -{signal} {pid} failed");
}

/// Waits (polling every 5 ms) until `child` exits; panics after `timeout`. Returns the exit
/// status and how long the wait took.
pub fn wait_for_exit(
    child: &mut std::process::Child,
    timeout: std::time::Duration,
) -> (std::process::ExitStatus, std::time::Duration) {
    let started = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("waiting for the child") {
            return (status, started.elapsed());
        }
        assert!(
            started.elapsed() < timeout,
            "process {} still running after {timeout:?}",
            child.id()
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// A database server that accepts connections and never answers, so a service's startup
/// hangs while connecting. `accept` returns once the service is inside that wait.
pub struct UnresponsiveDatabase {
    listener: std::net::TcpListener,
    pub url: String,
}

impl UnresponsiveDatabase {
    pub fn bind() -> UnresponsiveDatabase {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding port 0");
        let port = listener.local_addr().expect("the bound address").port();
        UnresponsiveDatabase { listener, url: format!("postgres://tasker@127.0.0.1:{port}/hangs") }
    }

    /// Waits (bounded) for the first connection; keep the stream until the test is done
    /// (dropping it would fail the service's connect instead of letting it hang).
    pub fn accept(&self, timeout: std::time::Duration) -> std::net::TcpStream {
        self.listener.set_nonblocking(true).expect("a non-blocking listener");
        let started = std::time::Instant::now();
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => return stream,
                Err(err) if err.kind() == std::io::ErrorKind::WouldBlock => {
                    assert!(started.elapsed() < timeout, "nobody connected within {timeout:?}");
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                Err(err) => panic!("accepting a connection: {err}"),
            }
        }
    }
}
