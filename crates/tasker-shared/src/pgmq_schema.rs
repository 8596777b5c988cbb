//! PGMQ's schema: its SQL, compiled in and installed into any database (no extension
//! needed), recorded the way the `pgmq` crate's installer records it
//! (`pgmq.__pgmq_migrations`, the same advisory lock), so a database installed by either
//! is recognised by both. See `pgmq/README.md`.

use anyhow::Context as _;
use sqlx::PgPool;

/// The PGMQ version of [`PGMQ_SQL`].
pub const PGMQ_VERSION: &str = "1.11.1";
/// PGMQ's installation script, unchanged.
const PGMQ_SQL: &str = include_str!("../pgmq/pgmq-1.11.1.sql");
/// The name the installation script is recorded under.
const INIT_SCRIPT: &str = "pgmq.sql";
/// The transaction-level advisory lock every PGMQ installer takes (the `pgmq` crate's).
const ADVISORY_LOCK_KEY: i64 = i64::MIN + 4149;

/// `major.minor.patch` as numbers, for comparing versions.
fn version_key(version: &str) -> Option<(u64, u64, u64)> {
    let mut parts = version.trim().split('.').map(|p| p.parse::<u64>().ok());
    Some((parts.next()??, parts.next()??, parts.next()??))
}

/// Installs PGMQ into a database that has none; leaves an installation of this version or a
/// newer one as it is. Returns the installed version. Safe to run concurrently.
pub async fn install(pool: &PgPool) -> anyhow::Result<String> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(ADVISORY_LOCK_KEY)
        .execute(&mut *tx)
        .await?;
    sqlx::query("CREATE SCHEMA IF NOT EXISTS pgmq").execute(&mut *tx).await?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS pgmq.__pgmq_migrations ( name TEXT PRIMARY KEY NOT NULL, version TEXT NOT NULL, run_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT clock_timestamp())",
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query("LOCK TABLE pgmq.__pgmq_migrations IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *tx)
        .await?;
    let versions: Vec<String> = sqlx::query_scalar("SELECT version FROM pgmq.__pgmq_migrations")
        .fetch_all(&mut *tx)
        .await?;
    let installed = versions.iter().filter_map(|v| Some((version_key(v)?, v))).max();
    let version = match installed {
        None => {
            sqlx::raw_sql(PGMQ_SQL)
                .execute(&mut *tx)
                .await
                .context("running PGMQ's installation script")?;
            sqlx::query("INSERT INTO pgmq.__pgmq_migrations ( name, version ) VALUES ( $1, $2 )")
                .bind(INIT_SCRIPT)
                .bind(PGMQ_VERSION)
                .execute(&mut *tx)
                .await?;
            PGMQ_VERSION.to_string()
        }
        Some((key, version)) if Some(key) >= version_key(PGMQ_VERSION) => version.clone(),
        Some((_, version)) => anyhow::bail!(
            "this database has PGMQ {version}, older than the {PGMQ_VERSION} this build installs into a fresh database: upgrade it with PGMQ's own scripts, or use a fresh database"
        ),
    };
    tx.commit().await?;
    Ok(version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_as_numbers() {
        assert!(version_key("1.11.1") > version_key("1.9.0"));
        assert_eq!(version_key(" 1.11.1"), Some((1, 11, 1)));
        assert_eq!(version_key("1.11"), None);
        assert_eq!(version_key("x.1.2"), None);
    }

    #[test]
    fn the_script_is_pgmqs_and_the_lock_is_the_pgmq_crates() {
        assert!(PGMQ_SQL.contains("CREATE SCHEMA IF NOT EXISTS pgmq;"));
        assert!(PGMQ_SQL.contains("FUNCTION pgmq.send("), "not PGMQ's installation script");
        assert_eq!(ADVISORY_LOCK_KEY, -9223372036854775808 + 4149);
    }
}
