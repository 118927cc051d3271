//! Request field types: JSON strings and numbers that are only that
//! (poem-openapi's `String` also accepts numbers and booleans, but API.md
//! makes a wrongly typed field a 400), each documented in the schema with
//! its value rules while the service answers a broken rule with 422.

use std::borrow::Cow;

use poem_openapi::{
    registry::{MetaSchema, MetaSchemaRef},
    types::{ParseError, ParseFromJSON, ParseResult, ToJSON, Type},
};
use serde_json::Value;

use crate::validation::{
    DESCRIPTION_MAX, EMAIL_MAX, MAX_JSON_INTEGER, NAME_LEN, PASSWORD_LEN, USERNAME_LEN,
};

/// The schema of a string with the value rules API.md gives it. The service
/// still parses any string and answers a broken rule with 422
/// `ValidationFailed` (src/validation.rs); the schema tells clients and
/// generators the same rules up front.
#[derive(Default)]
struct Rules {
    format: Option<&'static str>,
    min: Option<usize>,
    max: Option<usize>,
    pattern: Option<&'static str>,
    example: Option<&'static str>,
    description: Option<&'static str>,
}

impl Rules {
    fn schema(self) -> MetaSchema {
        let mut schema = match self.format {
            Some(format) => MetaSchema::new_with_format("string", format),
            None => MetaSchema::new("string"),
        };
        schema.min_length = self.min;
        schema.max_length = self.max;
        schema.pattern = self.pattern.map(str::to_owned);
        schema.example = self.example.map(|e| Value::String(e.to_owned()));
        schema.description = self.description;
        schema
    }
}

/// Control characters (Unicode Cc) as a JSON Schema pattern class.
const NO_CONTROL: &str = r"^[^\u0000-\u001F\u007F-\u009F]*$";

/// A JSON string type that is only a string (poem-openapi's `String` also
/// accepts numbers and booleans, but API.md makes a wrongly typed field a
/// 400), documented with its rules.
macro_rules! text_type {
    ($(#[$doc:meta])* $name:ident, $rules:expr) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq)]
        pub struct $name(pub String);

        /// Never prints the value: request bodies carry passwords.
        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(concat!(stringify!($name), "(..)"))
            }
        }

        impl Type for $name {
            const IS_REQUIRED: bool = true;
            type RawValueType = String;
            type RawElementValueType = String;

            fn name() -> Cow<'static, str> {
                concat!("string_", stringify!($name)).into()
            }

            fn schema_ref() -> MetaSchemaRef {
                #[allow(clippy::needless_update)]
                let rules: Rules = $rules;
                MetaSchemaRef::Inline(Box::new(rules.schema()))
            }

            fn as_raw_value(&self) -> Option<&String> {
                Some(&self.0)
            }

            fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a String> + 'a> {
                Box::new(std::iter::once(&self.0))
            }
        }

        impl ParseFromJSON for $name {
            fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
                match value {
                    Some(Value::String(s)) => Ok($name(s)),
                    Some(other) => Err(ParseError::expected_type(other)),
                    None => Err(ParseError::expected_type(Value::Null)),
                }
            }
        }

        impl ToJSON for $name {
            fn to_json(&self) -> Option<Value> {
                Some(Value::String(self.0.clone()))
            }
        }
    };
}

text_type!(
    /// Any string (identifiers at login, a current password): no rules to show.
    Text,
    Rules::default()
);

text_type!(
    /// A username: 3 to 32 of `[A-Za-z0-9_.-]`, unique case-insensitively.
    Username,
    Rules {
        min: Some(*USERNAME_LEN.start()),
        max: Some(*USERNAME_LEN.end()),
        pattern: Some("^[A-Za-z0-9_.-]{3,32}$"),
        example: Some("ada_lovelace"),
        description: Some("3 to 32 of A-Z a-z 0-9 _ . -; unique case-insensitively."),
        ..Rules::default()
    }
);

text_type!(
    /// An email address: at most 254 characters, local part at most 64.
    Email,
    Rules {
        format: Some("email"),
        max: Some(EMAIL_MAX),
        example: Some("ada@example.com"),
        description: Some(
            "A valid address, at most 254 characters (local part at most 64); \
             unique case-insensitively."
        ),
        ..Rules::default()
    }
);

text_type!(
    /// A new password: 8 to 128 characters (Unicode scalar values).
    Password,
    Rules {
        format: Some("password"),
        min: Some(*PASSWORD_LEN.start()),
        max: Some(*PASSWORD_LEN.end()),
        example: Some("correct horse battery staple"),
        description: Some("8 to 128 characters."),
        ..Rules::default()
    }
);

text_type!(
    /// A `name` or `position`: 1 to 100 characters, no control characters.
    Name,
    Rules {
        min: Some(*NAME_LEN.start()),
        max: Some(*NAME_LEN.end()),
        pattern: Some(NO_CONTROL),
        description: Some("1 to 100 characters, no control characters."),
        ..Rules::default()
    }
);

text_type!(
    /// A product description: at most 2000 characters, no U+0000.
    Description,
    Rules {
        max: Some(DESCRIPTION_MAX),
        pattern: Some(r"^[^\u0000]*$"),
        description: Some("At most 2000 characters; newlines and tabs are fine, U+0000 is not."),
        ..Rules::default()
    }
);

/// A JSON number kept as sent (checked for decimals in the rules), so a
/// price is never rounded through a float on its way in.
#[derive(Debug, Clone, PartialEq)]
pub struct Price(pub serde_json::Number);

impl Price {
    /// A price from its JSON text (for examples); 0 if the text is no number.
    pub fn from_text(text: &str) -> Self {
        Price(serde_json::from_str(text).unwrap_or_else(|_| serde_json::Number::from(0)))
    }
}

impl Type for Price {
    const IS_REQUIRED: bool = true;
    type RawValueType = serde_json::Number;
    type RawElementValueType = serde_json::Number;

    fn name() -> Cow<'static, str> {
        "number_price".into()
    }

    fn schema_ref() -> MetaSchemaRef {
        let mut schema = MetaSchema::new("number");
        schema.description = Some("Exact decimal, at most 2 decimal places, 0 to 1000000000000.");
        // Exact multiples: schemathesis and most validators compare
        // rationals, so 0.35 is a multiple of 0.01 there.
        schema.multiple_of = Some(0.01);
        schema.minimum = Some(0.0);
        schema.maximum = Some(crate::money::MAX_PRICE);
        schema.example = Some(Value::from(19.99));
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

/// An integer field or parameter documented with its range. Any integer
/// parses; the rules (validation.rs, `Paging::new`) answer one out of range
/// with 422 or 400, after authentication (API.md's precedence).
macro_rules! integer_type {
    ($(#[$doc:meta])* $name:ident, $tyname:literal, $min:expr, $max:expr, $description:literal,
     default: $default:expr, example: $example:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub struct $name(pub i64);

        impl poem_openapi::types::Type for $name {
            const IS_REQUIRED: bool = true;
            type RawValueType = i64;
            type RawElementValueType = i64;

            fn name() -> std::borrow::Cow<'static, str> {
                $tyname.into()
            }

            fn schema_ref() -> poem_openapi::registry::MetaSchemaRef {
                let mut schema = poem_openapi::registry::MetaSchema::new_with_format("integer", "int64");
                schema.minimum = Some($min as f64);
                schema.maximum = Some($max as f64);
                schema.description = Some($description);
                let default: Option<i64> = $default;
                schema.default = default.map(serde_json::Value::from);
                let example: Option<i64> = $example;
                schema.example = example.map(serde_json::Value::from);
                poem_openapi::registry::MetaSchemaRef::Inline(Box::new(schema))
            }

            fn as_raw_value(&self) -> Option<&i64> {
                Some(&self.0)
            }

            fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a i64> + 'a> {
                Box::new(std::iter::once(&self.0))
            }
        }

        impl poem_openapi::types::ParseFromJSON for $name {
            fn parse_from_json(value: Option<serde_json::Value>) -> poem_openapi::types::ParseResult<Self> {
                use poem_openapi::types::ParseError;
                match value {
                    Some(serde_json::Value::Number(n)) => match n.as_i64() {
                        Some(v) => Ok($name(v)),
                        None => Err(ParseError::expected_type(serde_json::Value::Number(n))),
                    },
                    Some(other) => Err(ParseError::expected_type(other)),
                    None => Err(ParseError::expected_type(serde_json::Value::Null)),
                }
            }
        }

        impl poem_openapi::types::ParseFromParameter for $name {
            fn parse_from_parameter(value: &str) -> poem_openapi::types::ParseResult<Self> {
                value
                    .parse::<i64>()
                    .map($name)
                    .map_err(|_| poem_openapi::types::ParseError::custom("not an integer"))
            }
        }

        impl poem_openapi::types::ToJSON for $name {
            fn to_json(&self) -> Option<serde_json::Value> {
                Some(serde_json::Value::from(self.0))
            }
        }
    };
}
pub(crate) use integer_type;

integer_type!(
    /// A quantity in stock: 0 to 2^53 - 1 (else 422).
    Quantity,
    "integer_quantity",
    0,
    MAX_JSON_INTEGER,
    "0 to 9007199254740991 (2^53 - 1).",
    default: None,
    example: Some(3)
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn username_pattern_states_the_validated_length() {
        let schema = Username::schema_ref();
        let pattern = schema.unwrap_inline().pattern.clone().unwrap_or_default();
        let bounds = format!("{{{},{}}}", USERNAME_LEN.start(), USERNAME_LEN.end());
        assert!(pattern.contains(&bounds), "{pattern}");
    }
}
