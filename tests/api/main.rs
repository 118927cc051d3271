//! Integration tests: the whole app over HTTP, on both backends.

mod helpers;

mod auth_flow;
