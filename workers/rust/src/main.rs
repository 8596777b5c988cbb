//! `rust-worker`: the Rust step worker for the integration workflows (namespace `rust`).
//! Configuration: `TASKER_CONFIG_PATH` (a worker or complete config), `DATABASE_URL`,
//! `TASKER_WEB_BIND_ADDRESS`, `TASKER_INSTANCE_ID`, `RUST_LOG`. No flags.

mod handlers;

use std::process::ExitCode;

use tasker_shared::TaskerConfig;
use tasker_worker::WorkerOptions;

fn main() -> ExitCode {
    if std::env::args().len() > 1 {
        let help = matches!(std::env::args().nth(1).as_deref(), Some("-h" | "--help"));
        let usage = "usage: rust-worker   (configured by TASKER_CONFIG_PATH, DATABASE_URL, \
                     TASKER_WEB_BIND_ADDRESS, TASKER_INSTANCE_ID, RUST_LOG; no flags)";
        if help {
            println!("{usage}");
            return ExitCode::SUCCESS;
        }
        eprintln!("error: rust-worker takes no arguments\n{usage}");
        return ExitCode::from(2);
    }
    tasker_shared::init_tracing();
    let config = match TaskerConfig::load().and_then(|config| {
        config.worker()?;
        Ok(config)
    }) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("building the tokio runtime");
    let result = runtime.block_on(tasker_worker::run(
        config,
        handlers::registry(),
        WorkerOptions::new("rust"),
    ));
    runtime.shutdown_timeout(tasker_shared::config::RUNTIME_SHUTDOWN_TIMEOUT);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(1)
        }
    }
}
