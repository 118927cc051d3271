//! The answers hyper writes itself when it cannot parse an HTTP/1.1 request
//! head (400 malformed, 431 head or header count too large, 414 URI too
//! long), made API.md JSON errors. hyper 1 has no hook for them: it writes
//! `HTTP/1.1 <status>\r\nconnection: close\r\ncontent-length: 0\r\n...` and
//! closes, before any service runs. The serve loop's socket wrapper
//! recognises exactly that write and sends this instead.

use uuid::Uuid;

use super::API_CSP;
use crate::error::{ErrorBody, ErrorCode};

/// What hyper writes after its status line for a parse error (and the app
/// never does: its responses always start with their content type).
const BARE_MARK: &[u8] = b"\r\nconnection: close\r\ncontent-length: 0\r\n";

/// The JSON response to send instead of `written`, when `written` is one of
/// hyper's bare parse-error answers (whole, as hyper writes it in one go).
pub fn json_for_bare_error(written: &[u8]) -> Option<Vec<u8>> {
    let (status, message) = [
        (
            &b"HTTP/1.1 400 Bad Request"[..],
            "The request could not be parsed.",
        ),
        (
            &b"HTTP/1.1 431 Request Header Fields Too Large"[..],
            "The request head is too large or has too many header fields.",
        ),
        (
            &b"HTTP/1.1 414 URI Too Long"[..],
            "The request URI is too long.",
        ),
    ]
    .into_iter()
    .find(|(line, _)| written.starts_with(line) && written[line.len()..].starts_with(BARE_MARK))?;
    if !written.ends_with(b"\r\n\r\n") {
        return None;
    }
    let date = written
        .split(|b| *b == b'\n')
        .find(|l| l.starts_with(b"date: "))
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let body = serde_json::to_vec(&ErrorBody {
        code: ErrorCode::BadRequest,
        message: message.into(),
        fields: None,
        mfa_token: None,
        expires_in: None,
    })
    .ok()?;
    let mut out = Vec::with_capacity(512 + body.len());
    out.extend_from_slice(status);
    out.extend_from_slice(
        b"\r\nconnection: close\r\ncontent-type: application/json; charset=utf-8\r\n",
    );
    out.extend_from_slice(b"x-content-type-options: nosniff\r\nx-frame-options: DENY\r\n");
    out.extend_from_slice(b"referrer-policy: no-referrer\r\ncache-control: no-store\r\n");
    out.extend_from_slice(format!("content-security-policy: {API_CSP}\r\n").as_bytes());
    out.extend_from_slice(format!("x-request-id: {}\r\n", Uuid::now_v7()).as_bytes());
    out.extend_from_slice(format!("content-length: {}\r\n", body.len()).as_bytes());
    if let Some(date) = date {
        out.extend_from_slice(date);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&body);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hypers_bare_answers_become_json_errors() {
        for (status, bare) in [
            (400, "HTTP/1.1 400 Bad Request"),
            (431, "HTTP/1.1 431 Request Header Fields Too Large"),
            (414, "HTTP/1.1 414 URI Too Long"),
        ] {
            let written = format!(
                "{bare}\r\nconnection: close\r\ncontent-length: 0\r\ndate: Sun, 06 Dec 2026 09:57:10 GMT\r\n\r\n"
            );
            let out = json_for_bare_error(written.as_bytes()).expect("replaced");
            let text = String::from_utf8(out).expect("utf-8");
            let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
            assert!(head.starts_with(&format!("HTTP/1.1 {status} ")), "{head}");
            assert!(
                head.contains("\r\ncontent-type: application/json"),
                "{head}"
            );
            assert!(head.contains("\r\nx-request-id: "), "{head}");
            assert!(
                head.contains("\r\ndate: Sun, 06 Dec 2026 09:57:10 GMT"),
                "{head}"
            );
            assert!(
                head.contains(&format!("\r\ncontent-length: {}", body.len())),
                "{head}"
            );
            let json: serde_json::Value = serde_json::from_str(body).expect("JSON body");
            assert_eq!(json["code"], "BadRequest");
            assert!(json["message"].is_string());
        }
    }

    #[test]
    fn the_apps_own_answers_are_left_alone() {
        for written in [
            // A response of the app: content type first, with a body.
            &b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: 2\r\n\r\n{}"[..],
            b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 0\r\n\r\n",
            // Not the whole head in this write.
            b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\ndate: Sun",
        ] {
            assert_eq!(json_for_bare_error(written), None);
        }
    }
}
