//! The client's address, behind a trusted gateway or not.

use std::net::IpAddr;

use poem::Request;

/// The client's address: the socket peer, or with `trust_forwarded` the
/// rightmost `X-Forwarded-For` entry (the one our gateway appended).
pub fn client_ip(req: &Request, trust_forwarded: bool) -> Option<String> {
    if trust_forwarded {
        // The rightmost entry of the last header is the one our gateway added.
        let last = req
            .headers()
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .next_back()
            .and_then(|v| v.rsplit(',').map(str::trim).find(|s| !s.is_empty()))
            .and_then(|s| s.parse::<IpAddr>().ok());
        if let Some(ip) = last {
            return Some(ip.to_string());
        }
    }
    req.remote_addr()
        .as_socket_addr()
        .map(|a| a.ip().to_canonical().to_string())
}
