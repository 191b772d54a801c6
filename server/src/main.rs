//! `slipway`: with no command (or `serve`), reads the configuration, starts the engine,
//! serves and shuts down gracefully; any other command is the client (`server::cli`).

use anyhow::Context;
use engine::{Config, Engine};
use server::cli::Invocation;
use std::process::ExitCode;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    match server::cli::parse() {
        Invocation::Client(command) => server::cli::run(command),
        Invocation::Serve => match serve() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("Error: {e:?}");
                ExitCode::FAILURE
            }
        },
    }
}

/// `slipway serve`: serves until SIGINT or SIGTERM.
#[tokio::main]
async fn serve() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn")),
        )
        .init();
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("slipway: invalid configuration: {e}");
            std::process::exit(2);
        }
    };
    tracing::info!(?config, "starting");
    let listener = tokio::net::TcpListener::bind(config.addr)
        .await
        .with_context(|| format!("SLIPWAY_ADDR: cannot listen on {}", config.addr))?;
    let addr = config.addr;
    let engine = Engine::start_with_docker(config)
        .await
        .context("starting the engine")?;
    if let Err(refusal) = server::exposure_check(addr, &engine) {
        eprintln!("slipway: {refusal}");
        engine.shutdown().await;
        std::process::exit(2);
    }
    tracing::info!("serving the dashboard on http://{}", listener.local_addr()?);
    if let Some(notice) = server::setup_notice(&engine, listener.local_addr()?) {
        // On stderr as well as in the log: whoever started the server needs this link.
        eprintln!("slipway: {notice}");
    }
    server::run(engine.clone(), listener, shutdown_signal()).await?;
    tracing::info!("shutting down");
    engine.shutdown().await;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
}
