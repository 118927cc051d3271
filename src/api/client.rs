//! What a request says about its client: user agent and address (the
//! session's `user_agent` and `ip`, and the login limits' address).

use poem::{Request, http::header};

use crate::{auth::tokens::ClientMeta, state::AppState};

pub fn client_meta(state: &AppState, req: &Request) -> ClientMeta {
    let user_agent = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.chars().take(256).collect());
    ClientMeta {
        user_agent,
        ip: crate::http::client_ip(req, state.settings.trust_forwarded),
    }
}
