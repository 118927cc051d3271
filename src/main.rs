//! The `tessera` command line: serve (default) | migrate | openapi | create-admin.

use anyhow::Context;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
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
    /// Create the admin account if absent: email and username from
    /// TESSERA_ADMIN_EMAIL / TESSERA_ADMIN_USERNAME (or flags), password from
    /// TESSERA_ADMIN_PASSWORD or a prompt, never from the command line.
    CreateAdmin,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // The settings are flags of every subcommand too (`tessera serve
    // --bind ...`, API.md), not only of the bare command.
    let matches = Cli::command()
        .mut_args(|a| {
            if a.get_id() == "help" || a.get_id() == "version" {
                a
            } else {
                a.global(true)
            }
        })
        .get_matches();
    let mut cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    cli.config = cli.config.with_env_secrets();
    match cli.command.unwrap_or(Command::Serve) {
        Command::Openapi => {
            print!("{}", tessera::openapi_yaml());
            Ok(())
        }
        Command::Migrate => {
            telemetry::init(cli.config.log_format);
            let db = state::connect_db(&cli.config.database_url).await?;
            state::migrate(&db, &cli.config.database_url).await?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::CreateAdmin => create_admin(cli.config).await,
        Command::Serve => serve(cli.config).await,
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    // Dropped last, on every return: every queued line is written.
    let _logs = telemetry::init_server(config.log_format);
    tessera::http::CorsPolicy::parse(config.cors_origins.as_deref())
        .map_err(anyhow::Error::msg)
        .context("invalid TESSERA_CORS_ORIGINS")?;
    let state = state::AppState::build(&config).await?;
    if let (Some(email), Some(password)) = (&config.admin_email, &config.admin_password) {
        let username = config.admin_username.as_deref().unwrap_or("admin");
        tessera::bootstrap::ensure_admin(&state, email, username, password.clone()).await?;
    }
    match tessera::server::raise_open_file_limit() {
        Ok((before, after)) => tracing::info!(before, after, "open-file limit (RLIMIT_NOFILE)"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open-file limit"),
    }
    let shutdown = shutdown_signal()?;
    let listener = tokio::net::TcpListener::bind(&config.bind)
        .await
        .with_context(|| format!("cannot listen on {}", config.bind))?;
    tracing::info!(bind = %config.bind, "tessera listening; Swagger UI at /docs");
    let limits = tessera::server::Limits::from_config(&config);
    let sender = tessera::mail::sender::start(state.clone(), Default::default());
    let app = tessera::app(state);
    tessera::server::release_startup_memory();
    let served = tessera::server::serve(listener, app, limits, shutdown)
        .await
        .context("server error");
    // After the last request: mail they queued still goes out if it can.
    sender.drain(MAIL_DRAIN_GRACE).await;
    served?;
    tracing::info!("drained; bye");
    Ok(())
}

/// How long a stopping replica keeps delivering due mail; what is left
/// stays queued for the other replicas or the next start.
const MAIL_DRAIN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

async fn create_admin(mut config: Config) -> anyhow::Result<()> {
    telemetry::init(config.log_format);
    let email = config
        .admin_email
        .clone()
        .context("set TESSERA_ADMIN_EMAIL (or --admin-email)")?;
    let username = config
        .admin_username
        .clone()
        .unwrap_or_else(|| "admin".into());
    let password = match config.admin_password.take() {
        Some(p) => p,
        None => {
            use std::io::IsTerminal;
            // Never wait for a prompt nobody can answer (CI, containers).
            anyhow::ensure!(
                std::io::stdin().is_terminal(),
                "set TESSERA_ADMIN_PASSWORD: stdin is not a terminal, so the password cannot be prompted for"
            );
            let p = rpassword::prompt_password(format!("Password for {email}: "))
                .context("cannot read the password (set TESSERA_ADMIN_PASSWORD)")?;
            secrecy::SecretString::from(p)
        }
    };
    let db = state::connect_db(&config.database_url).await?;
    state::migrate(&db, &config.database_url).await?;
    let passwords = tessera::auth::password::Passwords::new(
        config.argon2_memory_kib,
        config.argon2_iterations,
        config.argon2_parallelism,
    )
    .await?;
    tessera::bootstrap::create_admin_in(&db, &passwords, &email, &username, password).await
}

/// SIGTERM (Kubernetes) or Ctrl-C: stop accepting, drain in-flight requests.
/// The handlers are installed here, before the listener is bound: a future
/// that installed them on its first poll left a window after `/readyz` first
/// answered in which SIGTERM still killed the process outright.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
        let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
        Ok(async move {
            tokio::select! {
                _ = term.recv() => {},
                _ = int.recv() => {},
            }
            tracing::info!("shutdown signal received; draining");
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("shutdown signal received; draining");
        })
    }
}
