//! The database pool and the schema: PGMQ's SQL (embedded in the `pgmq` crate, no
//! extension needed) and this project's migrations (embedded in the binary).

use std::borrow::Cow;
use std::sync::LazyLock;
use std::time::Duration;

use anyhow::Context as _;
use sqlx::PgPool;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection};

use crate::config::DatabaseConfig;
use crate::redact_database_url;

/// This project's migrations, compiled in: version, description (the file name's, with
/// `_` as spaces, as sqlx names it) and SQL of each file in `migrations/`, in order. A test
/// checks the list against the directory.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        20260101000000,
        "tasks and steps",
        include_str!("../migrations/20260101000000_tasks_and_steps.sql"),
    ),
    (
        20261201000000,
        "cancelled steps",
        include_str!("../migrations/20261201000000_cancelled_steps.sql"),
    ),
];

/// The migrator of [`MIGRATIONS`], built at run time rather than by `sqlx::migrate!`,
/// whose macro crate compiles a second copy of the database stack for the compiler's
/// host (docs/analysis/build-time.md). Same versions, descriptions and checksums (SHA-384
/// of the SQL), so databases migrated either way agree.
pub static MIGRATOR: LazyLock<Migrator> = LazyLock::new(|| Migrator {
    migrations: Cow::Owned(
        MIGRATIONS
            .iter()
            .map(|(version, description, sql)| {
                Migration::new(
                    *version,
                    Cow::Borrowed(*description),
                    MigrationType::Simple,
                    Cow::Borrowed(*sql),
                    false,
                )
            })
            .collect(),
    ),
    // The fields `sqlx::migrate!` fills (public for it; the lockfile pins sqlx).
    ignore_missing: false,
    locking: true,
    no_tx: false,
});

/// Opens the pool described by `config`.
pub async fn connect(config: &DatabaseConfig) -> anyhow::Result<PgPool> {
    connect_url(
        &config.url,
        config.pool.max_connections,
        config.pool.min_connections,
        Duration::from_millis(config.pool.acquire_timeout_ms),
    )
    .await
}

/// Opens a pool on `url` (used where no config file is needed, e.g. `migrate`).
pub async fn connect_url(
    url: &str,
    max_connections: u32,
    min_connections: u32,
    acquire_timeout: Duration,
) -> anyhow::Result<PgPool> {
    // One direct attempt first: it fails fast with the real cause (connection refused,
    // unknown database, authentication), where the pool would retry until its acquire
    // timeout and then only say that it timed out. Bounded by that timeout too: a server
    // that accepts but never answers must not hang the startup.
    let options: PgConnectOptions = url
        .parse()
        .with_context(|| format!("invalid database URL {}", redact_database_url(url)))?;
    match tokio::time::timeout(acquire_timeout, options.connect()).await {
        Ok(Ok(probe)) => {
            let _ = probe.close().await;
        }
        Ok(Err(err)) => anyhow::bail!("cannot connect to {}: {err}", redact_database_url(url)),
        Err(_) => anyhow::bail!(
            "cannot connect to {}: no answer within {acquire_timeout:?}",
            redact_database_url(url)
        ),
    }
    PgPoolOptions::new()
        .max_connections(max_connections)
        .min_connections(min_connections)
        .acquire_timeout(acquire_timeout)
        .connect_with(options)
        .await
        .with_context(|| format!("connecting to {}", redact_database_url(url)))
}

/// The readiness check of every service's database: one query, answered within 2 s.
/// `Err` says what went wrong.
pub async fn check_ready(pool: &PgPool) -> Result<(), String> {
    let query = sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(pool);
    match tokio::time::timeout(Duration::from_secs(2), query).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(err)) => Err(err.to_string()),
        Err(_) => Err("no answer within 2 s".to_string()),
    }
}

/// What [`migrate`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationReport {
    pub pgmq_version: Option<String>,
    pub applied: Vec<i64>,
}

/// Installs PGMQ's SQL, then applies pending migrations. Both take advisory locks and
/// skip what is already there, so running it twice (or concurrently) is safe.
pub async fn migrate(pool: &PgPool) -> anyhow::Result<MigrationReport> {
    let pgmq_version = Some(crate::pgmq_schema::install(pool).await.context("installing PGMQ")?);
    let before: Vec<i64> = applied_versions(pool).await?;
    MIGRATOR.run(pool).await.context("applying migrations")?;
    let applied =
        applied_versions(pool).await?.into_iter().filter(|v| !before.contains(v)).collect();
    Ok(MigrationReport { pgmq_version, applied })
}

async fn applied_versions(pool: &PgPool) -> anyhow::Result<Vec<i64>> {
    let exists: bool =
        sqlx::query_scalar("SELECT to_regclass('public._sqlx_migrations') IS NOT NULL")
            .fetch_one(pool)
            .await?;
    if !exists {
        return Ok(Vec::new());
    }
    Ok(sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
        .fetch_all(pool)
        .await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::UnresponsiveDatabase;

    #[test]
    fn the_compiled_in_migrations_are_the_files_of_the_migrations_directory() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
        let mut files: Vec<(i64, String, String)> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "sql"))
            .map(|path| {
                let stem = path.file_stem().unwrap().to_string_lossy().to_string();
                let (version, name) = stem.split_once('_').unwrap();
                let sql = std::fs::read_to_string(&path).unwrap();
                (version.parse().unwrap(), name.replace('_', " "), sql)
            })
            .collect();
        files.sort();
        let compiled: Vec<(i64, String, String)> =
            MIGRATIONS.iter().map(|(v, d, s)| (*v, d.to_string(), s.to_string())).collect();
        assert_eq!(compiled, files, "add each new file of migrations/ to MIGRATIONS");
        assert_eq!(MIGRATOR.iter().count(), files.len());
    }

    #[tokio::test]
    async fn a_server_that_never_answers_fails_the_connect_after_the_acquire_timeout() {
        let database = UnresponsiveDatabase::bind();
        let err = connect_url(&database.url, 2, 0, Duration::from_millis(200)).await.unwrap_err();
        assert!(err.to_string().contains("no answer within 200ms"), "{err}");
    }
}
