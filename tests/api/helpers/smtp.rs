//! A real SMTP server for the tests (tests/smtp/server.py, aiosmtpd) and
//! the mails it received. Each server writes every accepted message as one
//! JSON file into its mailbox directory (one directory per port, so a
//! server restarted on the same port keeps its mailbox).

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{Mutex, OnceLock},
};

use serde_json::Value;

use super::{Cleanup, Daemon, free_port, register_cleanup, wait_for_port};

const INSTALL_HINT: &str = "python3 -m venv target/smtp-venv && \
     target/smtp-venv/bin/pip install aiosmtpd==1.4.6 (scripts/test does this), \
     or point TESSERA_TEST_PYTHON at a python that has aiosmtpd";

/// The Python that runs the server: `$TESSERA_TEST_PYTHON`, or the venv
/// scripts/test makes under target/. Checked once for aiosmtpd.
fn python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let python = std::env::var_os("TESSERA_TEST_PYTHON")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                Path::new(env!("CARGO_MANIFEST_DIR")).join("target/smtp-venv/bin/python")
            });
        let ok = Command::new(&python)
            .args(["-c", "import aiosmtpd"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok,
            "the test SMTP server needs Python with aiosmtpd, not found at {}: {INSTALL_HINT}",
            python.display()
        );
        python
    })
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/smtp/server.py")
}

/// This process's mailboxes: `<tmp>/tessera-mail-<pid>/<port>`, removed at
/// exit.
fn mailbox_dir(port: u16) -> PathBuf {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    let root = ROOT.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("tessera-mail-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the mailbox root");
        register_cleanup(Cleanup::RemoveDir(dir.clone()));
        dir
    });
    let dir = root.join(port.to_string());
    std::fs::create_dir_all(&dir).expect("create a mailbox directory");
    dir
}

/// A private SMTP server; killed when the handle is dropped or at exit.
pub struct MailServer {
    pub port: u16,
    process: Daemon,
}

impl MailServer {
    pub fn start() -> Self {
        Self::start_on(free_port())
    }

    /// Starts a server on `port`, with the mailbox of any earlier server on
    /// that port.
    pub fn start_on(port: u16) -> Self {
        let dir = mailbox_dir(port);
        let log = std::fs::File::create(dir.with_extension("log")).expect("server log file");
        let child = Command::new(python())
            .arg(script())
            .arg(port.to_string())
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run the test SMTP server ({e}): {INSTALL_HINT}"));
        wait_for_port(port, "the test SMTP server (tests/smtp/server.py)");
        Self {
            port,
            process: Daemon::new("the test SMTP server", child),
        }
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    pub fn mailbox(&self) -> Mailbox {
        Mailbox(mailbox_dir(self.port))
    }

    /// SIGSTOP: connections are accepted by the kernel, nothing answers.
    pub fn freeze(&self) {
        self.process.freeze();
    }

    pub fn thaw(&self) {
        self.process.thaw();
    }

    pub fn stop(&mut self) {
        self.process.stop();
    }
}

/// The binary-wide SMTP server shared by tests (each app has its own From,
/// which tells its mails apart); returns its URL.
pub fn shared_mail_server() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        let server = MailServer::start();
        let url = server.url();
        server.process.keep_until_exit();
        url
    })
}

/// A received mail, as the server decoded it.
#[derive(Debug, Clone)]
pub struct Mail {
    /// The envelope sender (the From address).
    pub envelope_from: String,
    /// The envelope recipients.
    pub to: Vec<String>,
    /// The From header.
    pub from: String,
    pub subject: String,
    pub content_type: String,
    pub text: String,
    pub html: String,
    pub raw: String,
}

impl Mail {
    fn parse(v: &Value) -> Self {
        let s = |k: &str| v[k].as_str().unwrap_or("").to_owned();
        Self {
            envelope_from: s("envelope_from"),
            to: v["envelope_to"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
            from: s("from"),
            subject: s("subject"),
            content_type: s("content_type"),
            text: s("text"),
            html: s("html"),
            raw: s("raw"),
        }
    }

    /// The one-time token of the link in the text part (after `#token=`).
    pub fn link_token(&self) -> Option<String> {
        let (_, rest) = self.text.split_once("#token=")?;
        let token: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
            .collect();
        (!token.is_empty()).then_some(token)
    }

    /// The whole link in the text part (`http...#token=...`).
    pub fn link(&self) -> Option<String> {
        self.text
            .split_whitespace()
            .find(|w| w.contains("#token="))
            .map(str::to_owned)
    }

    pub fn is_to(&self, address: &str) -> bool {
        self.to.iter().any(|t| t.eq_ignore_ascii_case(address))
    }
}

/// A server's received mails (the server may be stopped or restarted).
#[derive(Debug, Clone)]
pub struct Mailbox(PathBuf);

impl Mailbox {
    /// The mailbox of the server at `url` (`smtp://127.0.0.1:<port>`).
    pub fn of_url(url: &str) -> Self {
        let port = url
            .rsplit(':')
            .next()
            .and_then(|p| p.trim_end_matches('/').parse::<u16>().ok())
            .unwrap_or_else(|| panic!("not a test SMTP server URL: {url}"));
        Mailbox(mailbox_dir(port))
    }

    /// Every mail received so far, in the order received.
    pub fn all(&self) -> Vec<Mail> {
        // Files never change once renamed into place: parse each once.
        static PARSED: OnceLock<Mutex<HashMap<PathBuf, Mail>>> = OnceLock::new();
        let cache = PARSED.get_or_init(Default::default);
        let mut names: Vec<PathBuf> = std::fs::read_dir(&self.0)
            .map(|rd| {
                rd.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "json"))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        let mut cache = cache.lock().unwrap_or_else(|p| p.into_inner());
        names
            .into_iter()
            .filter_map(|path| {
                if let Some(m) = cache.get(&path) {
                    return Some(m.clone());
                }
                let text = std::fs::read_to_string(&path).ok()?;
                let value: Value = serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()));
                let mail = Mail::parse(&value);
                cache.insert(path, mail.clone());
                Some(mail)
            })
            .collect()
    }
}
