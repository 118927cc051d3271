use std::sync::Arc;

use poem::web::Data;
use poem_openapi::{ApiResponse, Object, OpenApi, payload::Json};

use super::Tag;
use crate::{error::ApiError, state::AppState};

#[derive(Object)]
pub struct Status {
    pub status: String,
}

#[derive(ApiResponse)]
enum Ready {
    /// The database and the token store answer.
    #[oai(status = 200)]
    Ready(Json<Status>),
}

pub struct HealthApi;

#[OpenApi(tag = "Tag::Health")]
impl HealthApi {
    /// Liveness: the process is up.
    #[oai(path = "/healthz", method = "get", operation_id = "healthz")]
    async fn healthz(&self) -> Json<Status> {
        Json(Status {
            status: "ok".into(),
        })
    }

    /// Readiness: 503 when the database or the token store is unreachable.
    #[oai(path = "/readyz", method = "get", operation_id = "readyz")]
    async fn readyz(&self, state: Data<&Arc<AppState>>) -> Result<Ready, ApiError> {
        state.db.ping().await.map_err(ApiError::unavailable)?;
        if let Some(readers) = &state.read_pool {
            readers.ping().await.map_err(ApiError::unavailable)?;
        }
        if let Some(reads) = &state.sqlite_reads {
            reads.ping()?;
        }
        state.tokens.store.ping().await?;
        Ok(Ready::Ready(Json(Status {
            status: "ready".into(),
        })))
    }
}
