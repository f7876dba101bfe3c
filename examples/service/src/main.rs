//! The example service: `cargo run -p cachette-example-service` with
//! `DATABASE_URL`, `REDIS_URL` (or `CACHE_URL`) and optionally `LISTEN`
//! set, or `--database-url`, `--redis-url`, `--listen`. See `README.md`.

use std::process::ExitCode;
use std::time::Duration;

use cachette_example_service::{App, Config};
use metrics_exporter_prometheus::PrometheusBuilder;
use tracing_subscriber::EnvFilter;

/// How often the Prometheus recorder drops old histogram samples.
const METRICS_UPKEEP: Duration = Duration::from_secs(5);

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("{err}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let config =
        Config::from_env_and_args(|name| std::env::var(name).ok(), std::env::args().skip(1))?;
    // The global recorder: cachette's metrics layer records through the
    // `metrics` facade's macros, which reach the global recorder.
    let metrics = PrometheusBuilder::new().install_recorder()?;
    let upkeep = metrics.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(METRICS_UPKEEP);
        loop {
            every.tick().await;
            upkeep.run_upkeep();
        }
    });

    let app = App::start(&config, metrics).await?;
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    tracing::info!(address = %listener.local_addr()?, "listening");
    axum::serve(listener, app.router())
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("shutting down");
        })
        .await?;
    Ok(())
}
