//! Requests that a gateway or WAF in front may read another way than we do
//! are refused (API.md "Precise rules"): JSON bodies with a duplicate key
//! (serde_json keeps the last, many others the first) and more than one
//! `Authorization` header.

use std::{collections::HashSet, fmt, sync::Arc};

use poem::{
    Endpoint, Request, Response,
    http::{StatusCode, header},
};
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use super::AllowTable;
use crate::error::ApiError;

/// Whether `body` is JSON with some object holding one key twice (keys
/// compared after unescaping, at any depth). Streams over the bytes with
/// one set of keys per open object; no tree is built. Bytes that are not
/// JSON answer `false`: the endpoint's own parser refuses them.
pub fn has_duplicate_key(body: &[u8]) -> bool {
    let mut de = serde_json::Deserializer::from_slice(body);
    matches!(Walk.deserialize(&mut de), Err(e) if is_duplicate(&e))
}

const DUPLICATE: &str = "duplicate key";

fn is_duplicate(e: &serde_json::Error) -> bool {
    e.is_data() && e.to_string().starts_with(DUPLICATE)
}

/// Visits any JSON value, failing on the first repeated key.
struct Walk;

impl<'de> DeserializeSeed<'de> for Walk {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Walk)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = HashSet::new();
        // Keys as owned strings: escaped keys ("\u0065mail") come unescaped.
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key) {
                return Err(serde::de::Error::custom(DUPLICATE));
            }
            map.next_value_seed(Walk)?;
        }
        Ok(())
    }
}

/// Whether the request declares a JSON body (`application/json`, or a
/// `+json` type), the only bodies our endpoints parse.
pub fn is_json(req: &Request) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .is_some_and(|m| {
            m == "application/json" || (m.starts_with("application/") && m.ends_with("+json"))
        })
}

/// The 400 for a body with a duplicate key.
pub fn duplicate_key_error() -> ApiError {
    ApiError::BadRequest("The JSON body has a duplicate key.".into())
}

/// 400 `BadRequest` for more than one `Authorization` header, after the
/// route and method errors (API.md's precedence): on a path and method of
/// the API document it answers at once, before any handler or
/// authentication; anywhere else the routes answer first, and anything
/// but their 404/405 becomes the 400 (those are read-only pages).
pub async fn single_authorization<E: Endpoint>(
    ep: Arc<E>,
    req: Request,
    allow: Arc<AllowTable>,
) -> poem::Result<Response> {
    if req.headers().get_all(header::AUTHORIZATION).iter().count() <= 1 {
        return Ok(ep.get_response(req).await);
    }
    let refused =
        || ApiError::BadRequest("Send at most one Authorization header.".into()).to_response();
    let methods = allow.allow(req.uri().path());
    if methods.split(", ").any(|m| m == req.method().as_str()) {
        return Ok(refused());
    }
    let r = ep.get_response(req).await;
    if matches!(
        r.status(),
        StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED
    ) {
        Ok(r)
    } else {
        Ok(refused())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicate_keys_at_any_depth() {
        for dup in [
            r#"{"email":"a","email":"b"}"#,
            r#"{"email":"a","\u0065mail":"b"}"#,
            r#"{"a":{"b":1,"b":2}}"#,
            r#"[{"x":1},{"y":[{"z":1,"z":1}]}]"#,
            r#"{"n":1.5,"n":2}"#,
        ] {
            assert!(has_duplicate_key(dup.as_bytes()), "{dup}");
        }
        for fine in [
            r#"{"email":"a","password":"b"}"#,
            r#"{"a":{"b":1},"c":{"b":2}}"#,
            r#"[{"x":1},{"x":1}]"#,
            r#"{"n":12345678901234567890123,"m":-0.5e-300}"#,
            r#""x""#,
            r#"not json"#,
            "",
        ] {
            assert!(!has_duplicate_key(fine.as_bytes()), "{fine}");
        }
    }
}
