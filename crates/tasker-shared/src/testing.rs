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

    /// Closes the pool and drops the database (best effort: a failure only leaks a
    /// database on a throwaway server).
    pub async fn drop_database(self) {
        self.pool.close().await;
        if let Ok(mut admin) = self.server.connect().await {
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name))
                .execute(&mut admin)
                .await;
        }
    }
}
