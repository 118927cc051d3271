use std::sync::Arc;

use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::{
    Object, OpenApi,
    param::{Path, Query},
    payload::Json,
    types::Example,
};
use uuid::Uuid;

use super::{
    Tag,
    params::{Id, PageNumber, PerPage},
    responses::{Created, NoContent, Page},
    security::Access,
    text::Name,
};
use crate::{
    employees::{self, Fields},
    error::ApiResult,
    state::AppState,
};

#[derive(Object)]
pub struct Employee {
    pub id: Uuid,
    pub name: String,
    pub position: String,
    pub owner_id: Uuid,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<entity::employee::Model> for Employee {
    fn from(e: entity::employee::Model) -> Self {
        Self {
            id: e.id,
            name: e.name,
            position: e.position,
            owner_id: e.owner_id,
            created_at: e.created_at,
            updated_at: e.updated_at,
        }
    }
}

#[derive(Object)]
#[oai(example)]
pub struct NewEmployee {
    pub name: Name,
    pub position: Name,
}

impl Example for NewEmployee {
    fn example() -> Self {
        NewEmployee {
            name: Name("Grace Hopper".into()),
            position: Name("Rear admiral".into()),
        }
    }
}

/// Absent or null fields stay unchanged.
#[derive(Object)]
#[oai(example)]
pub struct EmployeeChange {
    #[oai(nullable)]
    pub name: Option<Name>,
    #[oai(nullable)]
    pub position: Option<Name>,
}

impl Example for EmployeeChange {
    fn example() -> Self {
        EmployeeChange {
            name: None,
            position: Some(Name("Commodore".into())),
        }
    }
}

pub struct EmployeesApi;

async fn update(
    state: &AppState,
    auth: Access,
    id: Id,
    body: EmployeeChange,
) -> ApiResult<Json<Employee>> {
    let id = id.uuid()?;
    let fields = Fields {
        name: body.name.map(|t| t.0),
        position: body.position.map(|t| t.0),
    };
    Ok(Json(
        employees::update(&state.db, auth.0.sub, id, fields)
            .await?
            .into(),
    ))
}

#[OpenApi(tag = "Tag::Employees")]
impl EmployeesApi {
    /// The caller's employees, newest first.
    #[oai(path = "/employees", method = "get", operation_id = "list_employees")]
    async fn list(
        &self,
        state: Data<&Arc<AppState>>,
        auth: Access,
        page: Query<Option<PageNumber>>,
        per_page: Query<Option<PerPage>>,
    ) -> ApiResult<Json<Page<Employee>>> {
        let paging = super::params::paging(page.0, per_page.0)?;
        let (items, total) = state.reads().employees(auth.0.sub, paging).await?;
        Ok(Json(Page::of(items, paging, total)))
    }

    /// Add an employee owned by the caller.
    #[oai(path = "/employees", method = "post", operation_id = "create_employee")]
    async fn create(
        &self,
        state: Data<&Arc<AppState>>,
        auth: Access,
        body: Json<NewEmployee>,
    ) -> ApiResult<Created<Employee>> {
        let e = employees::create(&state.db, auth.0.sub, body.0.name.0, body.0.position.0).await?;
        let location = format!("/employees/{}", e.id);
        Ok(Created::at(e.into(), location))
    }

    /// One of the caller's employees (another user's is 404).
    #[oai(path = "/employees/:id", method = "get", operation_id = "get_employee")]
    async fn get(
        &self,
        state: Data<&Arc<AppState>>,
        auth: Access,
        id: Path<Id>,
    ) -> ApiResult<Json<Employee>> {
        let id = id.0.uuid()?;
        Ok(Json(state.reads().employee(auth.0.sub, id).await?.into()))
    }

    /// Change an employee; absent fields stay.
    #[oai(
        path = "/employees/:id",
        method = "patch",
        operation_id = "update_employee"
    )]
    async fn patch(
        &self,
        state: Data<&Arc<AppState>>,
        auth: Access,
        id: Path<Id>,
        body: Json<EmployeeChange>,
    ) -> ApiResult<Json<Employee>> {
        update(&state, auth, id.0, body.0).await
    }

    /// Same as PATCH.
    #[oai(path = "/employees/:id", method = "put", operation_id = "put_employee")]
    async fn put(
        &self,
        state: Data<&Arc<AppState>>,
        auth: Access,
        id: Path<Id>,
        body: Json<EmployeeChange>,
    ) -> ApiResult<Json<Employee>> {
        update(&state, auth, id.0, body.0).await
    }

    /// Delete an employee.
    #[oai(
        path = "/employees/:id",
        method = "delete",
        operation_id = "delete_employee"
    )]
    async fn delete(
        &self,
        state: Data<&Arc<AppState>>,
        auth: Access,
        id: Path<Id>,
    ) -> ApiResult<NoContent> {
        let id = id.0.uuid()?;
        employees::delete(&state.db, auth.0.sub, id).await?;
        Ok(NoContent::Done)
    }
}
