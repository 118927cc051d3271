//! The rules of tokens and passwords. No HTTP, no `AppState`, no `Config`:
//! everything here takes the key ring, the store and its own settings.

pub mod claims;
pub mod cookies;
pub mod csrf;
pub mod fair_share;
pub mod keys;
pub mod limits;
pub mod mfa_token;
pub mod password;
pub mod recovery_codes;
pub mod rotation;
pub mod sealed;
pub mod server_key;
pub mod store;
pub mod tokens;
pub mod totp;
pub mod verified_tokens;
pub mod verify_cache;
