//! `bench smtp-sink`: an SMTP server that accepts every message and keeps
//! none, so the service's mail sender has a real SMTP peer on loopback
//! (the `register` and `forgot` scenarios). It answers just enough of
//! RFC 5321 for lettre (EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT) and
//! prints the running count of accepted messages once a second while it
//! changes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// What the sink does with one command line.
#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    /// Write this and read the next command.
    Line(&'static str),
    /// 354, then the message up to the lone `.` line.
    Data,
    /// 221 and close.
    Quit,
}

/// The answer to one command line (outside a message's data).
pub fn reply(line: &[u8]) -> Reply {
    let verb: Vec<u8> = line
        .iter()
        .take_while(|b| b.is_ascii_alphabetic())
        .map(u8::to_ascii_uppercase)
        .collect();
    match verb.as_slice() {
        b"EHLO" => Reply::Line("250-bench-sink\r\n250 8BITMIME\r\n"),
        b"HELO" => Reply::Line("250 bench-sink\r\n"),
        b"MAIL" | b"RCPT" | b"RSET" | b"NOOP" => Reply::Line("250 2.0.0 ok\r\n"),
        b"DATA" => Reply::Data,
        b"QUIT" => Reply::Quit,
        _ => Reply::Line("502 5.5.2 not implemented\r\n"),
    }
}

/// Whether `line` ends a message's data (the lone dot).
pub fn ends_data(line: &[u8]) -> bool {
    line == b".\r\n" || line == b".\n"
}

pub async fn serve(bind: &str) -> Result<()> {
    let listener = TcpListener::bind(bind)
        .await
        .with_context(|| format!("binding {bind}"))?;
    eprintln!(
        "bench smtp-sink: listening on smtp://{} (accepts and discards)",
        listener.local_addr()?
    );
    let count = Arc::new(AtomicU64::new(0));
    tokio::spawn(progress(count.clone()));
    loop {
        let (socket, _) = listener.accept().await.context("accepting")?;
        let count = count.clone();
        tokio::spawn(async move {
            // A client that goes away mid-session is no concern of a sink.
            let _ = session(socket, &count).await;
        });
    }
}

async fn session(socket: TcpStream, count: &AtomicU64) -> std::io::Result<()> {
    socket.set_nodelay(true)?;
    let (read, mut write) = socket.into_split();
    let mut read = BufReader::new(read);
    write.write_all(b"220 bench-sink ESMTP\r\n").await?;
    let mut line = Vec::with_capacity(1024);
    let mut in_data = false;
    loop {
        line.clear();
        if read.read_until(b'\n', &mut line).await? == 0 {
            return Ok(());
        }
        if in_data {
            if ends_data(&line) {
                in_data = false;
                count.fetch_add(1, Ordering::Relaxed);
                write.write_all(b"250 2.0.0 accepted\r\n").await?;
            }
            continue;
        }
        match reply(&line) {
            Reply::Line(text) => write.write_all(text.as_bytes()).await?,
            Reply::Data => {
                in_data = true;
                write.write_all(b"354 end with <CRLF>.<CRLF>\r\n").await?;
            }
            Reply::Quit => {
                write.write_all(b"221 2.0.0 bye\r\n").await?;
                return Ok(());
            }
        }
    }
}

/// `<seconds since start> s <total> mails`, once a second while it grows.
async fn progress(count: Arc<AtomicU64>) {
    let start = Instant::now();
    let mut last = 0;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = count.load(Ordering::Relaxed);
        if now != last {
            println!("{:.0} s {now} mails", start.elapsed().as_secs_f64());
            last = now;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_the_commands_lettre_sends() {
        assert_eq!(
            reply(b"EHLO client.example\r\n"),
            Reply::Line("250-bench-sink\r\n250 8BITMIME\r\n")
        );
        assert_eq!(
            reply(b"mail FROM:<a@b>\r\n"),
            Reply::Line("250 2.0.0 ok\r\n")
        );
        assert_eq!(reply(b"RCPT TO:<c@d>\r\n"), Reply::Line("250 2.0.0 ok\r\n"));
        assert_eq!(reply(b"DATA\r\n"), Reply::Data);
        assert_eq!(reply(b"QUIT\r\n"), Reply::Quit);
        assert_eq!(
            reply(b"STARTTLS\r\n"),
            Reply::Line("502 5.5.2 not implemented\r\n")
        );
    }

    #[test]
    fn only_a_lone_dot_ends_the_data() {
        assert!(ends_data(b".\r\n"));
        assert!(!ends_data(b"..\r\n"));
        assert!(!ends_data(b". \r\n"));
        assert!(!ends_data(b"text.\r\n"));
    }
}
