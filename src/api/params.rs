//! Path parameters parsed by our rules, so that errors keep
//! API.md's precedence (authentication and role before parameters) and
//! every bad value is a 400 `BadRequest`.

use std::borrow::Cow;

use poem_openapi::{
    registry::{MetaSchema, MetaSchemaRef},
    types::{ParseFromParameter, ParseResult, Type},
};
use uuid::Uuid;

use super::text::integer_type;
use crate::{error::ApiError, paging::Paging};

/// A resource id: documented as a UUID, checked in the handler.
#[derive(Debug, Clone)]
pub struct Id(String);

impl Id {
    pub fn uuid(&self) -> Result<Uuid, ApiError> {
        Uuid::parse_str(&self.0).map_err(|_| ApiError::BadRequest("The id is not a UUID.".into()))
    }
}

impl Type for Id {
    const IS_REQUIRED: bool = true;
    type RawValueType = String;
    type RawElementValueType = String;

    fn name() -> Cow<'static, str> {
        "string_uuid".into()
    }

    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Inline(Box::new(MetaSchema::new_with_format("string", "uuid")))
    }

    fn as_raw_value(&self) -> Option<&String> {
        Some(&self.0)
    }

    fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a String> + 'a> {
        Box::new(std::iter::once(&self.0))
    }
}

impl ParseFromParameter for Id {
    fn parse_from_parameter(value: &str) -> ParseResult<Self> {
        Ok(Id(value.to_owned()))
    }
}

integer_type!(
    /// The page number, from 1 (`Paging::new` answers one out of range with 400).
    PageNumber,
    "integer_page",
    1,
    crate::paging::MAX_PAGE,
    "The page, from 1.",
    default: Some(1),
    example: None
);

integer_type!(
    /// Items per page, 1 to 100.
    PerPage,
    "integer_per_page",
    1,
    100,
    "Items per page, 1 to 100.",
    default: Some(20),
    example: None
);

/// The `page` and `per_page` of a list request, checked.
pub fn paging(page: Option<PageNumber>, per_page: Option<PerPage>) -> Result<Paging, ApiError> {
    Paging::new(page.map(|p| p.0), per_page.map(|p| p.0))
}
