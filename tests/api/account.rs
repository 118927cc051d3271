//! Fresh-token actions on the caller's own account.
