//! `bench baseline`: the floors. A bare poem server whose one route does one
//! Redis `EXISTS` on a shared multiplexed connection and answers 200 — the
//! least any Redis-backed token check can cost on this machine — or, with
//! `--no-redis`, answers 200 with no Redis call at all: the least any HTTP
//! exchange costs, which a verify answered from the per-replica cache
//! (issue 22) is compared with.

use anyhow::{Context, Result};
use poem::http::StatusCode;
use poem::listener::TcpListener;
use poem::web::Data;
use poem::{EndpointExt, Route, Server, get, handler};
use redis::aio::ConnectionManager;

#[handler]
async fn floor(conn: Data<&ConnectionManager>) -> StatusCode {
    let mut conn = conn.0.clone();
    match redis::cmd("EXISTS")
        .arg("tessera:bench:floor")
        .query_async::<i64>(&mut conn)
        .await
    {
        Ok(_) => StatusCode::OK,
        Err(_) => StatusCode::SERVICE_UNAVAILABLE,
    }
}

#[handler]
async fn http_only() -> StatusCode {
    StatusCode::OK
}

/// `redis_url`: `None` serves the HTTP-only floor.
pub async fn serve(bind: &str, redis_url: Option<&str>) -> Result<()> {
    let server = Server::new(TcpListener::bind(bind.to_owned()));
    match redis_url {
        Some(redis_url) => {
            let client = redis::Client::open(redis_url).context("parsing --redis")?;
            let conn = ConnectionManager::new(client)
                .await
                .with_context(|| format!("connecting to {redis_url}"))?;
            let app = Route::new().at("/", get(floor)).data(conn);
            eprintln!("bench baseline: listening on http://{bind}/ (one EXISTS per request)");
            server.run(app).await
        }
        None => {
            let app = Route::new().at("/", get(http_only));
            eprintln!("bench baseline: listening on http://{bind}/ (HTTP only, no Redis)");
            server.run(app).await
        }
    }
    .context("serving")
}
