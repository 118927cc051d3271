//! Path parameters parsed by our rules, so that errors keep
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

/// A `page` or `per_page` query value: any integer is parsed here and
/// `Paging::new` answers one out of range with 400, after authentication
/// (API.md's precedence); the schema documents the range.
macro_rules! page_param {
    ($(#[$doc:meta])* $name:ident, $tyname:literal, $min:expr, $max:expr, $default:expr, $description:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy)]
        pub struct $name(pub i64);

        impl Type for $name {
            const IS_REQUIRED: bool = true;
            type RawValueType = i64;
            type RawElementValueType = i64;

            fn name() -> Cow<'static, str> {
                $tyname.into()
            }

            fn schema_ref() -> MetaSchemaRef {
                let mut schema = MetaSchema::new_with_format("integer", "int64");
                schema.minimum = Some($min as f64);
                schema.maximum = Some($max as f64);
                schema.default = Some(serde_json::Value::from($default));
                schema.description = Some($description);
                MetaSchemaRef::Inline(Box::new(schema))
            }

            fn as_raw_value(&self) -> Option<&i64> {
                Some(&self.0)
            }

            fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a i64> + 'a> {
                Box::new(std::iter::once(&self.0))
            }
        }

        impl ParseFromParameter for $name {
            fn parse_from_parameter(value: &str) -> ParseResult<Self> {
                value
                    .parse::<i64>()
                    .map($name)
                    .map_err(|_| poem_openapi::types::ParseError::custom("not an integer"))
            }
        }
    };
}

page_param!(
    /// The page number, from 1.
    PageNumber,
    "integer_page",
    1,
    crate::paging::MAX_PAGE,
    1,
    "The page, from 1."
);

page_param!(
    /// Items per page, 1 to 100.
    PerPage,
    "integer_per_page",
    1,
    100,
    20,
    "Items per page, 1 to 100."
);
