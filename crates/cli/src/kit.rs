//! Running daemons from another program: `starling devnet`, the benchmark harness
//! and the end-to-end tests start `starling up` children with it ([`Daemon`]), call
//! their API ([`Client`]), and wait on conditions with deadlines ([`wait_for`]).
//! Every process started here is stopped when its handle is dropped, whatever
//! happened; a daemon also stops by itself when its parent dies (its standard input,
//! a pipe held by the handle, closes).

use std::ffi::OsStr;
use std::future::Future;
use std::os::unix::fs::OpenOptionsExt;
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::Value;
use starling_node::{AuthorId, Profile, ProfileDir};

pub use crate::client::{Client, ClientError};

/// How long a daemon may take to answer after it was started.
pub const START_LIMIT: Duration = Duration::from_secs(60);
/// How long a daemon may take to stop after SIGTERM before it is killed.
pub const STOP_LIMIT: Duration = Duration::from_secs(15);
/// The shortest pause between two checks of a condition.
const POLL: Duration = Duration::from_millis(20);

/// What a condition polled by [`wait_for`] answers: `true`, or `Some(value)`, once
/// it holds.
pub trait Outcome {
    type Value;
    fn into_value(self) -> Option<Self::Value>;
}

impl Outcome for bool {
    type Value = ();
    fn into_value(self) -> Option<()> {
        self.then_some(())
    }
}

impl<T> Outcome for Option<T> {
    type Value = T;
    fn into_value(self) -> Option<T> {
        self
    }
}

/// A condition that did not hold within its limit.
#[derive(thiserror::Error)]
#[error("timed out after {limit:?} waiting for {what}")]
pub struct TimedOut {
    pub what: String,
    pub limit: Duration,
}

impl std::fmt::Debug for TimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// Checks `condition` until it holds (`true` or `Some(value)`) and returns its
/// value, or fails after `limit` with an error naming `what`. Between checks it
/// pauses 20 ms, or as long as the last check took when that was longer (a check
/// that runs a command then takes at most half the time).
pub async fn wait_for<F, Fut, O>(
    limit: Duration,
    what: &str,
    mut condition: F,
) -> Result<O::Value, TimedOut>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = O>,
    O: Outcome,
{
    let deadline = Instant::now() + limit;
    loop {
        let checked = Instant::now();
        if let Some(v) = condition().await.into_value() {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            return Err(TimedOut {
                what: what.to_string(),
                limit,
            });
        }
        tokio::time::sleep(checked.elapsed().max(POLL)).await;
    }
}

/// A child process that is always stopped: killed (SIGKILL) when dropped unless it
/// was stopped before. Its standard input is a pipe held until then.
pub struct Process {
    child: Child,
    _stdin: Option<ChildStdin>,
}

impl Process {
    pub fn spawn(command: &mut Command) -> std::io::Result<Self> {
        let mut child = command.stdin(Stdio::piped()).spawn()?;
        let stdin = child.stdin.take();
        Ok(Self {
            child,
            _stdin: stdin,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its standard output, if it was captured (`Stdio::piped()`); once.
    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.child.stdout.take()
    }

    /// How it ended, if it has.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// SIGTERM, then waits for it to end; after `limit` it is killed and this is an
    /// error.
    pub async fn stop(mut self, limit: Duration) -> anyhow::Result<ExitStatus> {
        if let Some(pid) = rustix::process::Pid::from_raw(self.pid() as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let pid = self.pid();
        match wait_for(limit, &format!("process {pid} to stop"), || {
            let ended = self.exited();
            async move { ended }
        })
        .await
        {
            Ok(status) => Ok(status),
            Err(e) => {
                self.kill();
                Err(e).context("it was killed")
            }
        }
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        if self.exited().is_none() {
            self.kill();
        }
    }
}

/// A running `starling up` on loopback, stopped when dropped.
pub struct Daemon {
    process: Process,
    dir: ProfileDir,
    author: AuthorId,
    url: String,
    token: String,
    client: Client,
}

impl Daemon {
    /// Starts the daemon of the profile in `dir` and waits until its API answers.
    /// `starling` runs the `starling` command line (the binary, or a program
    /// embedding it, with its environment); to it are added `--data-dir <dir> up
    /// --stop-on-stdin-eof`, `--api-addr 127.0.0.1:0` (unless `args` has
    /// `--api-addr`), then (unless `args` has `--offline`) `--listen
    /// /ip4/127.0.0.1/tcp/0 --dht-refresh off`, then `args`. Its output goes to the
    /// profile's `daemon.log` (mode 0600: it holds the sign-in link).
    pub async fn start<S: AsRef<OsStr>>(
        starling: Command,
        dir: &ProfileDir,
        args: &[S],
    ) -> anyhow::Result<Self> {
        Self::launch(starling, dir, args, true).await
    }

    /// Starts the daemon as a user would, with plain `starling up` (default ports,
    /// every interface; `--stop-on-stdin-eof` only) and waits until its API answers.
    pub async fn start_plain(starling: Command, dir: &ProfileDir) -> anyhow::Result<Self> {
        Self::launch::<&str>(starling, dir, &[], false).await
    }

    async fn launch<S: AsRef<OsStr>>(
        mut starling: Command,
        dir: &ProfileDir,
        args: &[S],
        on_loopback: bool,
    ) -> anyhow::Result<Self> {
        let profile = Profile::open(dir.path())?;
        let token = dir.token()?;
        let log_path = dir.log_path();
        let log = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&log_path)
            .with_context(|| format!("cannot create {}", log_path.display()))?;
        starling
            .arg("--data-dir")
            .arg(dir.path())
            .args(["up", "--stop-on-stdin-eof"]);
        if on_loopback && !args.iter().any(|a| a.as_ref() == "--api-addr") {
            starling.args(["--api-addr", "127.0.0.1:0"]);
        }
        if on_loopback && !args.iter().any(|a| a.as_ref() == "--offline") {
            starling.args(["--listen", "/ip4/127.0.0.1/tcp/0", "--dht-refresh", "off"]);
        }
        let mut process = Process::spawn(starling.args(args).stdout(log.try_clone()?).stderr(log))
            .with_context(|| format!("cannot start {:?}", starling.get_program()))?;
        let pid = process.pid();
        let what = format!("the daemon of {} to answer", dir.display());
        let ready = wait_for(START_LIMIT, &what, || {
            let exited = process.exited();
            let endpoint = dir.endpoint().filter(|e| e.pid == pid);
            let token = token.clone();
            async move {
                if let Some(status) = exited {
                    return Some(Err(status));
                }
                let url = endpoint?.url;
                let client = Client::new(dir, &url, token).ok()?;
                client.get::<Value>("/whoami").await.ok()?;
                Some(Ok((url, client)))
            }
        })
        .await;
        let (url, client) = match ready {
            Ok(Ok(ready)) => ready,
            Ok(Err(status)) => anyhow::bail!(
                "the daemon of {} exited ({status}); {}",
                dir.display(),
                log_tail(&log_path)
            ),
            Err(e) => anyhow::bail!("{e}; {}", log_tail(&log_path)),
        };
        Ok(Self {
            process,
            dir: dir.clone(),
            author: profile.identity.author(),
            url,
            token,
            client,
        })
    }

    pub fn dir(&self) -> &ProfileDir {
        &self.dir
    }

    /// The profile's key.
    pub fn author(&self) -> AuthorId {
        self.author
    }

    /// Where the API listens: `http://127.0.0.1:PORT` (or the `--api-addr` given).
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// `GET /api/v1<path>`; an error answer is [`ClientError::Api`].
    pub async fn get(&self, path: &str) -> Result<Value, ClientError> {
        self.client.get(path).await
    }

    /// `POST /api/v1<path>` with `body`; an error answer is [`ClientError::Api`].
    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, ClientError> {
        self.client.post(path, body).await
    }

    /// An address other nodes can bootstrap from (its first listen address).
    pub async fn bootstrap_addr(&self) -> anyhow::Result<String> {
        let status = self.get("/status").await?;
        Ok(status["network"]["listen_addrs"][0]
            .as_str()
            .with_context(|| format!("the daemon of {} has no listen address", self.dir.display()))?
            .to_string())
    }

    /// How it ended, if it has.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.process.exited()
    }

    /// SIGTERM, then waits for a clean exit; killed after [`STOP_LIMIT`] (an error).
    pub async fn stop(self) -> anyhow::Result<ExitStatus> {
        let dir = self.dir.display().to_string();
        self.process
            .stop(STOP_LIMIT)
            .await
            .with_context(|| format!("the daemon of {dir} did not stop"))
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill(mut self) {
        self.process.kill();
    }
}

/// The last lines of a daemon's log, for an error message.
fn log_tail(path: &std::path::Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(20)..].join("\n");
    format!("the end of {}:\n{tail}", path.display())
}

/// A real NTP server: chrony serving its own clock on a free loopback port, never
/// touching the system clock; stopped when dropped.
pub struct Chrony {
    process: Process,
    _dir: tempfile::TempDir,
    pub port: u16,
}

impl Chrony {
    /// Starts `chronyd` (Debian package `chrony`).
    pub fn start() -> anyhow::Result<Self> {
        let chronyd = ["/usr/sbin/chronyd", "/sbin/chronyd", "/usr/bin/chronyd"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .context("chronyd is not installed (Debian package `chrony`; .ci/run installs it)")?;
        let dir = tempfile::tempdir()?;
        let port = std::net::UdpSocket::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let conf = dir.path().join("chrony.conf");
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbindaddress 127.0.0.1\nallow 127.0.0.1\nlocal stratum 8\ncmdport 0\n\
                 pidfile {d}/chronyd.pid\ndriftfile {d}/drift\n",
                d = dir.path().display()
            ),
        )?;
        // -x: never touch the system clock; -d: stay in the foreground; -u root: no
        // privilege drop (the caller owns the process).
        let process = Process::spawn(
            Command::new(chronyd)
                .args(["-x", "-d", "-u", "root", "-f"])
                .arg(&conf)
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )?;
        Ok(Self {
            process,
            _dir: dir,
            port,
        })
    }

    /// `127.0.0.1:<port>`.
    pub fn server(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }
}
