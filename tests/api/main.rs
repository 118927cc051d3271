//! Integration tests: the whole app over HTTP, on both backends.

mod helpers;

mod account;
mod admin;
mod auth_flow;
mod browser;
mod catalog;
mod cli;
mod cluster;
mod connections;
mod docs;
mod email;
mod employees;
mod errors;
mod faults;
mod flood;
mod hygiene;
mod identity;
mod keys;
mod limits;
mod logscan;
mod metrics;
mod mfa;
mod openapi;
mod outage;
mod outbox;
mod pages;
mod production;
mod races;
mod redis_tls;
mod rules;
mod sessions;
mod shutdown;
mod store;
mod tokens;
mod verify_cache;
