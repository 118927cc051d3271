//! The `tessera` command line: serve (default) | migrate | openapi | create-admin.

use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use poem::{Server, listener::TcpListener};
use tessera::{config::Config, state, telemetry};

#[derive(Parser)]
#[command(name = "tessera", version, about = "JWT authentication service")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    config: Config,
}

#[derive(Subcommand)]
enum Command {
    /// Run the HTTP service (the default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Print the OpenAPI document (YAML).
    Openapi,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve) {
        Command::Openapi => {
            print!("{}", tessera::openapi_yaml());
            Ok(())
        }
        Command::Migrate => {
            telemetry::init(cli.config.log_format);
            let db = state::connect_db(&cli.config.database_url).await?;
            state::migrate(&db).await?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::Serve => serve(cli.config).await,
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    telemetry::init(config.log_format);
    let state = state::AppState::build(&config).await?;
    let listener = TcpListener::bind(config.bind.clone());
    tracing::info!(bind = %config.bind, "tessera listening; Swagger UI at /docs");
    Server::new(listener)
        .run_with_graceful_shutdown(
            tessera::app(state),
            shutdown_signal(),
            Some(Duration::from_secs(30)),
        )
        .await
        .context("server error")?;
    tracing::info!("drained; bye");
    Ok(())
}

/// SIGTERM (Kubernetes) or Ctrl-C: stop accepting, drain in-flight requests.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown signal received; draining");
}
