//! HTTP plumbing around the API: request ids, access logs and route labels, the one
//! translation of framework errors into API.md's JSON, request limits, and
//! the hygiene layers (security headers, CORS).

mod ambiguous;
mod client_ip;
mod cors;
mod errors;
mod headers;
mod limits;
mod parse_errors;
mod request_id;
mod routes;
mod stack;

pub use ambiguous::{has_duplicate_key, single_authorization};
pub use client_ip::client_ip;
pub use cors::*;
pub use errors::*;
pub use headers::*;
pub use limits::*;
pub use parse_errors::json_for_bare_error;
pub use request_id::*;
pub use routes::{RouteTemplates, UNMATCHED};
pub use stack::{Hardening, harden, harden_with};
