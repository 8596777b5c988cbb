//! `tasker-server`: the orchestration server. Configuration comes from the file named by
//! `TASKER_CONFIG_PATH` and the environment; there are no port flags.
//!
//! `tasker-server migrate` installs PGMQ and applies the migrations, then exits
//! (idempotent). It uses `database.url` from `TASKER_CONFIG_PATH` when set, else
//! `DATABASE_URL`.

use std::process::ExitCode;
use std::time::Duration;

use tasker_shared::templates::TemplateRegistry;
use tasker_shared::{TaskerConfig, redact_database_url};

const USAGE: &str = "usage: tasker-server [migrate]

  (no argument)  run the orchestration server (config: TASKER_CONFIG_PATH, DATABASE_URL,
                 TASKER_WEB_BIND_ADDRESS, TASKER_TEMPLATE_PATH, TASKER_INSTANCE_ID, RUST_LOG)
  migrate        install PGMQ and apply the database migrations, then exit (idempotent)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        [] => Command::Serve,
        ["migrate"] => Command::Migrate,
        ["-h" | "--help" | "help"] => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => {
            eprintln!("error: unexpected arguments {args:?}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    tasker_shared::init_tracing();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("building the tokio runtime");
    let result = runtime.block_on(async {
        match command {
            Command::Serve => serve().await,
            Command::Migrate => migrate().await,
        }
    });
    // Background tasks must not hold the exit.
    runtime.shutdown_timeout(tasker_shared::config::RUNTIME_SHUTDOWN_TIMEOUT);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::User(message)) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
        Err(Failure::Internal(err)) => {
            eprintln!("error: {err:#}");
            ExitCode::from(1)
        }
    }
}

enum Command {
    Serve,
    Migrate,
}

/// Bad configuration (exit 2) versus everything else (exit 1).
enum Failure {
    User(String),
    Internal(anyhow::Error),
}

impl From<anyhow::Error> for Failure {
    fn from(err: anyhow::Error) -> Self {
        Failure::Internal(err)
    }
}

async fn serve() -> Result<(), Failure> {
    let config = TaskerConfig::load().map_err(|err| Failure::User(err.to_string()))?;
    config.orchestration().map_err(|err| Failure::User(err.to_string()))?;
    let templates = TemplateRegistry::load_dir(&config.template_dir())
        .map_err(|err| Failure::User(err.to_string()))?;
    tracing::info!(
        config = %config.source.display(),
        database = redact_database_url(&config.database.url),
        templates = templates.len(),
        "starting tasker-orchestration"
    );
    tasker_orchestration::serve(config, templates, tasker_shared::shutdown_signal()).await?;
    Ok(())
}

async fn migrate() -> Result<(), Failure> {
    let url = if std::env::var_os(tasker_shared::config::CONFIG_PATH_VARIABLE).is_some() {
        TaskerConfig::load().map_err(|err| Failure::User(err.to_string()))?.database.url
    } else {
        std::env::var("DATABASE_URL").map_err(|_| {
            Failure::User("set DATABASE_URL (or TASKER_CONFIG_PATH) to migrate".into())
        })?
    };
    let pool = tasker_shared::db::connect_url(&url, 2, 0, Duration::from_secs(10)).await?;
    let report = tasker_shared::db::migrate(&pool).await?;
    pool.close().await;
    println!(
        "migrated {}: PGMQ {}, {} new migration(s)",
        redact_database_url(&url),
        report.pgmq_version.as_deref().unwrap_or("?"),
        report.applied.len()
    );
    Ok(())
}
