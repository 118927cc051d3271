//! The rules of tokens and passwords. No HTTP in here.

pub mod claims;
pub mod keys;
pub mod limits;
pub mod password;
pub mod sessions;
pub mod store;
