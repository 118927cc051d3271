//! Where a rendered mail goes: an SMTP server through lettre (`smtp://`
//! plain, `smtp://...?tls=required` STARTTLS, `smtps://` implicit TLS,
//! `user:pass@` authentication, all read by lettre from the URL), or the
//! log (the development mode: the mail, link included, is written as an
//! `info` line). A failure says whether trying again can help.

use std::time::Duration;

use lettre::{
    AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor,
    message::{Mailbox, MultiPart},
};
use secrecy::ExposeSecret;

use super::{Address, Delivery, templates::Rendered};

/// How long one SMTP command may take (lettre's default is 60 s): a hung
/// server then costs a sender a retry, not a minute.
pub const SMTP_TIMEOUT: Duration = Duration::from_secs(10);

/// A refused or failed delivery. The description names the failure (an
/// SMTP reply, a connection error), never the body or a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// Worth retrying: no connection, a timeout, a 4xx reply.
    Temporary(String),
    /// Final: a 5xx reply, an unusable recipient address.
    Permanent(String),
}

impl SendError {
    pub fn description(&self) -> &str {
        match self {
            SendError::Temporary(s) | SendError::Permanent(s) => s,
        }
    }
}

pub enum Transport {
    Log,
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
    /// The URL could not be turned into a transport (it was validated at
    /// start, so this is unexpected): every send fails temporarily and the
    /// mail waits in the outbox.
    Unusable(String),
}

impl Transport {
    pub fn new(delivery: &Delivery) -> Self {
        match delivery {
            Delivery::Log => Transport::Log,
            Delivery::Smtp(url) => {
                match AsyncSmtpTransport::<Tokio1Executor>::from_url(url.expose_secret()) {
                    Ok(b) => Transport::Smtp(b.timeout(Some(SMTP_TIMEOUT)).build()),
                    // lettre's error names the problem, not the URL (which
                    // may hold a password).
                    Err(e) => Transport::Unusable(format!("TESSERA_SMTP_URL unusable: {e}")),
                }
            }
        }
    }

    /// Delivers `mail` from `from` to `to`.
    pub async fn send(&self, from: &Address, to: &str, mail: &Rendered) -> Result<(), SendError> {
        match self {
            Transport::Log => {
                // The documented development delivery: the link is meant
                // to be read here.
                tracing::info!(
                    to,
                    from = %from.0,
                    subject = %mail.subject,
                    text = %mail.text,
                    "mail (log delivery, TESSERA_SMTP_URL unset)"
                );
                Ok(())
            }
            Transport::Unusable(why) => Err(SendError::Temporary(why.clone())),
            Transport::Smtp(smtp) => {
                let message = build_message(from, to, mail)?;
                smtp.send(message).await.map(|_| ()).map_err(classify)
            }
        }
    }
}

/// The MIME message: `multipart/alternative` with the text and HTML parts.
pub fn build_message(from: &Address, to: &str, mail: &Rendered) -> Result<Message, SendError> {
    let to: Mailbox = to
        .parse()
        .map_err(|e| SendError::Permanent(format!("unusable recipient address: {e}")))?;
    Message::builder()
        .from(from.0.clone())
        .to(to)
        .subject(mail.subject.clone())
        .multipart(MultiPart::alternative_plain_html(
            mail.text.clone(),
            mail.html.clone(),
        ))
        .map_err(|e| SendError::Permanent(format!("cannot build the message: {e}")))
}

/// Longest error description kept (`outbox.last_error`, logs).
const MAX_DESCRIPTION: usize = 300;

fn classify(e: lettre::transport::smtp::Error) -> SendError {
    let mut text = e.to_string();
    if text.len() > MAX_DESCRIPTION {
        let mut cut = MAX_DESCRIPTION;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        text.truncate(cut);
    }
    // 5xx is final; everything else (4xx, no connection, timeout, TLS
    // handshake, a dropped connection) may pass on a later try.
    if e.is_permanent() {
        SendError::Permanent(text)
    } else {
        SendError::Temporary(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    fn rendered() -> Rendered {
        Rendered {
            subject: "Reset your Acme password".into(),
            text: "open http://x/account/reset-password#token=TOKEN123".into(),
            html: "<p>html</p>".into(),
        }
    }

    fn from() -> Address {
        Address::parse("Acme <no-reply@acme.test>").expect("address")
    }

    #[test]
    fn messages_have_both_parts() {
        let m = build_message(&from(), "ann@example.com", &rendered()).expect("message");
        let raw = String::from_utf8(m.formatted()).expect("ascii");
        assert!(raw.contains("multipart/alternative"), "{raw}");
        assert!(
            raw.contains("text/plain") && raw.contains("text/html"),
            "{raw}"
        );
        assert!(raw.contains("From: Acme <no-reply@acme.test>"), "{raw}");
    }

    #[test]
    fn a_bad_recipient_is_permanent() {
        let e = build_message(&from(), "not an address", &rendered()).unwrap_err();
        assert!(matches!(e, SendError::Permanent(_)), "{e:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn no_server_is_a_temporary_failure() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("port");
        // Nothing listens there any more.
        let t = Transport::new(&Delivery::Smtp(format!("smtp://127.0.0.1:{port}").into()));
        let e = t
            .send(&from(), "ann@example.com", &rendered())
            .await
            .unwrap_err();
        assert!(matches!(e, SendError::Temporary(_)), "{e:?}");
        assert!(!e.description().contains("TOKEN123"), "{e:?}");
    }

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::Error::other("poisoned"))?
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_log_delivery_writes_the_mail_with_its_link() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        Transport::Log
            .send(&from(), "ann@example.com", &rendered())
            .await
            .expect("log delivery");
        let out = String::from_utf8(captured.0.lock().expect("lock").clone()).expect("utf-8");
        assert!(out.contains("ann@example.com"), "{out}");
        assert!(out.contains("Reset your Acme password"), "{out}");
        assert!(out.contains("#token=TOKEN123"), "{out}");
    }
}
