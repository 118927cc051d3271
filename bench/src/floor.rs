//! `bench baseline`: the floor. A bare poem server whose one route does one
//! Redis `EXISTS` on a shared multiplexed connection and answers 200 — the
//! least any Redis-backed token check can cost on this machine.

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

pub async fn serve(bind: &str, redis_url: &str) -> Result<()> {
    let client = redis::Client::open(redis_url).context("parsing --redis")?;
    let conn = ConnectionManager::new(client)
        .await
        .with_context(|| format!("connecting to {redis_url}"))?;
    let app = Route::new().at("/", get(floor)).data(conn);
    eprintln!("bench baseline: listening on http://{bind}/ (one EXISTS per request)");
    Server::new(TcpListener::bind(bind.to_owned()))
        .run(app)
        .await
        .context("serving")
}
