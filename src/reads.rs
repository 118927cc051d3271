//! Reads that decide nothing, each on the fastest path the database has:
//! in place on a file SQLite database (`sqlite_reads`), else SeaORM on the
//! read pool. Reads that decide a write go to `AppState::db` instead.

use std::sync::Arc;

use entity::{employee, user};
use sea_orm::{DatabaseConnection, EntityTrait};
use uuid::Uuid;

use crate::{error::ApiError, paging::Paging, sqlite_reads::SqliteReads};

#[derive(Clone, Copy)]
pub struct Reads<'a> {
    pub(crate) orm: &'a DatabaseConnection,
    pub(crate) sqlite: Option<&'a Arc<SqliteReads>>,
}

/// Deepest offset read in place: a few hundred index entries at most.
const INLINE_MAX_OFFSET: u64 = 500;

async fn blocking<T: Send + 'static>(
    s: &Arc<SqliteReads>,
    f: impl FnOnce(&SqliteReads) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let s = Arc::clone(s);
    tokio::task::spawn_blocking(move || f(&s))
        .await
        .map_err(ApiError::internal)?
}

impl Reads<'_> {
    pub async fn user(&self, id: Uuid) -> Result<Option<user::Model>, ApiError> {
        match self.sqlite {
            Some(s) => s.user(id),
            None => Ok(user::Entity::find_by_id(id).one(self.orm).await?),
        }
    }

    pub async fn employee(&self, owner: Uuid, id: Uuid) -> Result<employee::Model, ApiError> {
        match self.sqlite {
            Some(s) => s.employee(owner, id),
            None => crate::employees::get(self.orm, owner, id).await,
        }
    }

    pub async fn employees(
        &self,
        owner: Uuid,
        paging: Paging,
    ) -> Result<(Vec<employee::Model>, u64), ApiError> {
        let Some(s) = self.sqlite else {
            return crate::employees::list(self.orm, owner, paging).await;
        };
        // In place only while the statement reads a bounded number of rows;
        // a deep page or a count of a long list is work for the blocking pool.
        let shallow = paging.offset().is_some_and(|o| o <= INLINE_MAX_OFFSET);
        let (items, total) = if shallow {
            s.employees_page(owner, paging)?
        } else {
            blocking(s, move |s| s.employees_page(owner, paging)).await?
        };
        let total = match total {
            Some(total) => total,
            None => blocking(s, move |s| s.count_employees(owner)).await?,
        };
        Ok((items, total))
    }
}
