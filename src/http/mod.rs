//! HTTP plumbing around the API: request ids and access logs, the one
//! translation of framework errors into API.md's JSON, request limits, and
//! the hygiene layers (security headers, CORS).

mod client_ip;
mod cors;
mod errors;
mod headers;
mod limits;
mod request_id;
mod stack;

pub use client_ip::client_ip;
pub use cors::*;
pub use errors::*;
pub use headers::*;
pub use limits::*;
pub use request_id::*;
pub use stack::{Hardening, harden, harden_with};
