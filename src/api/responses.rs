//! Response shapes shared by the handlers.

use poem_openapi::{
    ApiResponse, Object,
    payload::Json,
    types::{ParseFromJSON, ToJSON},
};

use crate::paging::Paging;

#[derive(ApiResponse)]
pub enum NoContent {
    #[oai(status = 204)]
    Done,
}

/// 201 with the new resource and its `Location`.
#[derive(ApiResponse)]
pub enum Created<T: ToJSON + Send + Sync> {
    #[oai(status = 201)]
    Created(Json<T>, #[oai(header = "Location")] String),
}

impl<T: ToJSON + Send + Sync> Created<T> {
    pub fn at(body: T, location: String) -> Self {
        Created::Created(Json(body), location)
    }
}

/// One page of results: `page` from 1, `per_page` 1..=100, `total` over all pages.
#[derive(Object)]
pub struct Page<T: ParseFromJSON + ToJSON + Send + Sync> {
    pub items: Vec<T>,
    pub page: u64,
    pub per_page: u64,
    pub total: u64,
}

impl<T: ParseFromJSON + ToJSON + Send + Sync> Page<T> {
    /// A page of converted rows.
    pub fn of<M: Into<T>>(rows: Vec<M>, paging: Paging, total: u64) -> Self {
        Self {
            items: rows.into_iter().map(Into::into).collect(),
            page: paging.page,
            per_page: paging.per_page,
            total,
        }
    }
}
