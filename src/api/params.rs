//! Path and query parameters parsed by our rules, so that errors keep
//! API.md's precedence (authentication and role before parameters) and
//! every bad value is a 400 `BadRequest`.

use std::borrow::Cow;

use poem_openapi::{
    registry::{MetaSchema, MetaSchemaRef},
    types::{ParseFromParameter, ParseResult, Type},
};
use uuid::Uuid;

use crate::error::ApiError;

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

/// Validated paging: `page` from 1, `per_page` 1..=100 (default 20).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Paging {
    pub page: u64,
    pub per_page: u64,
}

impl Paging {
    pub fn new(page: Option<i64>, per_page: Option<i64>) -> Result<Self, ApiError> {
        let page = page.unwrap_or(1);
        let per_page = per_page.unwrap_or(20);
        if page < 1 {
            return Err(ApiError::BadRequest("`page` starts at 1.".into()));
        }
        if !(1..=100).contains(&per_page) {
            return Err(ApiError::BadRequest("`per_page` must be 1 to 100.".into()));
        }
        Ok(Self {
            page: page as u64,
            per_page: per_page as u64,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paging_bounds() {
        assert_eq!(
            Paging::new(None, None).unwrap(),
            Paging {
                page: 1,
                per_page: 20
            }
        );
        assert!(Paging::new(Some(0), None).is_err());
        assert!(Paging::new(None, Some(0)).is_err());
        assert!(Paging::new(None, Some(101)).is_err());
        assert!(Paging::new(Some(3), Some(100)).is_ok());
    }
}
