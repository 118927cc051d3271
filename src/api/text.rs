//! A JSON string that is only a string: poem-openapi's `String` also accepts
//! numbers and booleans, but API.md makes a wrongly typed field a 400.

use std::borrow::Cow;

use poem_openapi::{
    registry::{MetaSchema, MetaSchemaRef},
    types::{ParseError, ParseFromJSON, ParseResult, ToJSON, Type},
};
use serde_json::Value;

#[derive(Clone, PartialEq, Eq)]
pub struct Text(pub String);

/// Never prints the value: request bodies carry passwords.
impl std::fmt::Debug for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Text(..)")
    }
}

impl Type for Text {
    const IS_REQUIRED: bool = true;
    type RawValueType = String;
    type RawElementValueType = String;

    fn name() -> Cow<'static, str> {
        "string".into()
    }

    fn schema_ref() -> MetaSchemaRef {
        MetaSchemaRef::Inline(Box::new(MetaSchema::new("string")))
    }

    fn as_raw_value(&self) -> Option<&String> {
        Some(&self.0)
    }

    fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a String> + 'a> {
        Box::new(std::iter::once(&self.0))
    }
}

impl ParseFromJSON for Text {
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        match value {
            Some(Value::String(s)) => Ok(Text(s)),
            Some(other) => Err(ParseError::expected_type(other)),
            None => Err(ParseError::expected_type(Value::Null)),
        }
    }
}

impl ToJSON for Text {
    fn to_json(&self) -> Option<Value> {
        Some(Value::String(self.0.clone()))
    }
}

/// A JSON number kept as sent (checked for decimals in the rules), so a
/// price is never rounded through a float on its way in.
#[derive(Debug, Clone, PartialEq)]
pub struct Price(pub serde_json::Number);

impl Type for Price {
    const IS_REQUIRED: bool = true;
    type RawValueType = serde_json::Number;
    type RawElementValueType = serde_json::Number;

    fn name() -> Cow<'static, str> {
        "number_price".into()
    }

    fn schema_ref() -> MetaSchemaRef {
        let mut schema = MetaSchema::new("number");
        schema.description = Some("Exact decimal, at most 2 decimal places, >= 0");
        MetaSchemaRef::Inline(Box::new(schema))
    }

    fn as_raw_value(&self) -> Option<&serde_json::Number> {
        Some(&self.0)
    }

    fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a serde_json::Number> + 'a> {
        Box::new(std::iter::once(&self.0))
    }
}

impl ParseFromJSON for Price {
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        match value {
            Some(Value::Number(n)) => Ok(Price(n)),
            Some(other) => Err(ParseError::expected_type(other)),
            None => Err(ParseError::expected_type(Value::Null)),
        }
    }
}

impl ToJSON for Price {
    fn to_json(&self) -> Option<Value> {
        Some(Value::Number(self.0.clone()))
    }
}
