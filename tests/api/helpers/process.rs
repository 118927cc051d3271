//! Child processes with deadlines: every process a test starts is a [`Proc`]
//! (killed and reaped on drop) and every wait has a limit, so a hanging
//! binary fails the test instead of hanging CI.

use std::{
    io::Read,
    process::{Child, Command, ExitStatus, Output, Stdio},
    thread::JoinHandle,
    time::{Duration, Instant},
};

/// The `tessera` binary built for these tests.
pub fn tessera_bin() -> &'static str {
    env!("CARGO_BIN_EXE_tessera")
}

/// `tessera <args>` with a clean environment (only PATH), JSON logs and
/// stdin from /dev/null.
pub fn tessera(args: &[&str]) -> Command {
    let mut c = Command::new(tessera_bin());
    c.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("TESSERA_LOG_FORMAT", "json")
        .stdin(Stdio::null());
    c
}

/// A running child process; killed and reaped when dropped.
pub struct Proc {
    child: Option<Child>,
    what: String,
}

impl Proc {
    /// Spawns `cmd`; `what` names it in panic messages.
    #[track_caller]
    pub fn spawn(cmd: &mut Command, what: &str) -> Self {
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
        Self {
            child: Some(child),
            what: what.to_owned(),
        }
    }

    fn child(&mut self) -> &mut Child {
        self.child.as_mut().expect("process already reaped")
    }

    pub fn id(&self) -> u32 {
        self.child.as_ref().expect("process already reaped").id()
    }

    /// Takes the child's stdout/stderr pipes (when piped).
    pub fn take_pipes(
        &mut self,
    ) -> (
        Option<std::process::ChildStdout>,
        Option<std::process::ChildStderr>,
    ) {
        let c = self.child();
        (c.stdout.take(), c.stderr.take())
    }

    /// The exit status if it has exited, without blocking.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        let what = self.what.clone();
        self.child()
            .try_wait()
            .unwrap_or_else(|e| panic!("wait for {what}: {e}"))
    }

    /// Sends SIGTERM.
    #[track_caller]
    pub fn terminate(&self) {
        let pid = self.id() as libc::pid_t;
        assert_eq!(
            unsafe { libc::kill(pid, libc::SIGTERM) },
            0,
            "SIGTERM to {}",
            self.what
        );
    }

    /// Waits until the process exits; after `limit` kills it and panics.
    #[track_caller]
    pub fn wait_for(&mut self, limit: Duration) -> ExitStatus {
        match self.wait_or_kill(limit) {
            Some(status) => status,
            None => panic!("{} still running after {limit:?}: killed", self.what),
        }
    }

    /// As [`Proc::wait_for`], off the async runtime's worker threads.
    pub async fn wait_for_async(mut self, limit: Duration) -> ExitStatus {
        let (status, what) = tokio::task::spawn_blocking(move || {
            let status = self.wait_or_kill(limit);
            (status, self.what.clone())
        })
        .await
        .expect("wait task");
        status.unwrap_or_else(|| panic!("{what} still running after {limit:?}: killed"))
    }

    /// SIGTERM, then waits up to `limit` for the exit status.
    pub async fn terminate_and_wait(self, limit: Duration) -> ExitStatus {
        self.terminate();
        self.wait_for_async(limit).await
    }

    /// `None` (after killing and reaping it) if still running after `limit`.
    fn wait_or_kill(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(s) = self.try_wait() {
                return Some(s);
            }
            if Instant::now() >= deadline {
                self.kill();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

fn reader<R: Read + Send + 'static>(pipe: Option<R>) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut v = Vec::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_end(&mut v);
        }
        v
    })
}

/// Runs `cmd` to completion with stdout and stderr captured (read on their
/// own threads). `Err` with what it printed if still running after `limit`
/// (it is killed then).
pub fn try_output_within(cmd: &mut Command, limit: Duration) -> Result<Output, String> {
    let what = format!("{:?}", cmd.get_program());
    let mut proc = Proc::spawn(cmd.stdout(Stdio::piped()).stderr(Stdio::piped()), &what);
    let (out, err) = proc.take_pipes();
    let (out, err) = (reader(out), reader(err));
    let status = proc.wait_or_kill(limit);
    // Killed or exited: the pipes close (unless a grandchild holds them).
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    match status {
        Some(status) => Ok(Output {
            status,
            stdout,
            stderr,
        }),
        None => Err(format!(
            "{what} still running after {limit:?} (killed); stdout: {} stderr: {}",
            String::from_utf8_lossy(&stdout),
            String::from_utf8_lossy(&stderr)
        )),
    }
}

/// As [`try_output_within`], panicking on timeout.
#[track_caller]
pub fn output_within(cmd: &mut Command, limit: Duration) -> Output {
    try_output_within(cmd, limit).unwrap_or_else(|e| panic!("{e}"))
}
