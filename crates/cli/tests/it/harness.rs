//! Test harness: profiles in temporary directories, daemons as child processes that
//! are always stopped, HTTP calls to their API, and deadline-bounded waits.

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_starling");

/// Polls `f` until it returns `Some`, or panics after `timeout` naming `what`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One user's profile in its own temporary directory.
pub struct Profile {
    pub dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

impl Profile {
    /// `starling init --name <handle>` in a fresh directory.
    pub fn init(handle: &str) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join(handle);
        // STARLING_TEST_KEEP=1 keeps the profiles (and daemon logs) for a look after.
        let tmp = if std::env::var_os("STARLING_TEST_KEEP").is_some() {
            eprintln!("keeping {}", dir.display());
            let _ = tmp.keep();
            None
        } else {
            Some(tmp)
        };
        let p = Self { dir, _tmp: tmp };
        let out = p.cli(&["init", "--name", handle]);
        assert!(out.status.success(), "init failed: {}", stderr(&out));
        p
    }

    pub fn command(&self) -> Command {
        let mut c = Command::new(BIN);
        c.arg("--data-dir").arg(&self.dir);
        c.env_remove("STARLING_DATA_DIR")
            .env_remove("STARLING_PROFILE");
        c
    }

    /// Runs a client command to completion.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.command()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run starling")
    }

    /// Runs a client command with `--json` and parses its output; panics on failure.
    pub fn cli_json(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.cli(&all);
        assert!(
            out.status.success(),
            "starling {args:?} failed: {}",
            stderr(&out)
        );
        serde_json::from_slice(&out.stdout).expect("JSON output")
    }

    /// Starts `starling up` on free loopback ports (API and peer-to-peer) and waits
    /// until its API answers.
    pub async fn up(&self, extra: &[&str]) -> Daemon {
        let log = self.dir.join("daemon.log");
        let mut args = vec!["up", "--api-addr", "127.0.0.1:0"];
        if !extra.contains(&"--offline") {
            args.extend(["--listen", "/ip4/127.0.0.1/tcp/0", "--dht-refresh", "off"]);
        }
        let child = self
            .command()
            .args(&args)
            .args(extra)
            .env(
                "RUST_LOG",
                std::env::var("STARLING_TEST_LOG")
                    .unwrap_or_else(|_| "info,starling_node=debug".into()),
            )
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(self.dir.join("daemon.err")).unwrap())
            .spawn()
            .expect("spawn starling up");
        let mut d = Daemon {
            child,
            url: String::new(),
            token: std::fs::read_to_string(self.dir.join("api.token"))
                .unwrap()
                .trim()
                .to_string(),
            http: reqwest::Client::builder().no_proxy().build().unwrap(),
        };
        let dir = self.dir.clone();
        let pid = d.child.id();
        d.url = wait_for("the daemon's api.json", Duration::from_secs(30), || {
            let dir = dir.clone();
            async move {
                let v: Value =
                    serde_json::from_slice(&std::fs::read(dir.join("api.json")).ok()?).ok()?;
                (v["pid"].as_u64()? == pid as u64).then(|| v["url"].as_str().unwrap().to_string())
            }
        })
        .await;
        let probe = d.clone_client();
        wait_for("the API to answer", Duration::from_secs(30), || {
            let probe = probe.clone();
            async move {
                probe
                    .get("/api/v1/whoami")
                    .await
                    .ok()
                    .filter(|(s, _)| *s == 200)
            }
        })
        .await;
        d
    }
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A running daemon; killed when dropped, whatever happened.
pub struct Daemon {
    pub child: Child,
    pub url: String,
    pub token: String,
    pub http: reqwest::Client,
}

/// Just what is needed to call the API, cloneable into tasks.
#[derive(Clone)]
pub struct Api {
    pub url: String,
    pub token: String,
    pub http: reqwest::Client,
}

impl Api {
    pub async fn get(&self, path: &str) -> reqwest::Result<(u16, Value)> {
        let r = self
            .http
            .get(format!("{}{path}", self.url))
            .bearer_auth(&self.token)
            .send()
            .await?;
        let s = r.status().as_u16();
        Ok((s, r.json().await.unwrap_or(Value::Null)))
    }

    pub async fn post(&self, path: &str, body: &Value) -> reqwest::Result<(u16, Value)> {
        let r = self
            .http
            .post(format!("{}{path}", self.url))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await?;
        let s = r.status().as_u16();
        Ok((s, r.json().await.unwrap_or(Value::Null)))
    }
}

impl Daemon {
    pub fn clone_client(&self) -> Api {
        Api {
            url: self.url.clone(),
            token: self.token.clone(),
            http: self.http.clone(),
        }
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.clone_client().get(path).await.expect("API reachable")
    }

    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.clone_client()
            .post(path, body)
            .await
            .expect("API reachable")
    }

    pub async fn status(&self) -> Value {
        let (s, v) = self.get("/api/v1/status").await;
        assert_eq!(s, 200, "{v}");
        v
    }

    /// An address other nodes can bootstrap from.
    pub async fn addr(&self) -> String {
        self.status().await["network"]["listen_addrs"][0]
            .as_str()
            .expect("a listen address")
            .to_string()
    }

    pub async fn peer_id(&self) -> String {
        self.status().await["peer_id"].as_str().unwrap().to_string()
    }

    /// `(author, seq, body)` of the whole timeline, newest first.
    pub async fn timeline(&self) -> Vec<(String, u64, String)> {
        let mut out = Vec::new();
        let mut cursor = String::new();
        loop {
            let (s, page) = self
                .get(&format!("/api/v1/timeline?limit=500&before={cursor}"))
                .await;
            assert_eq!(s, 200, "{page}");
            for p in page["posts"].as_array().unwrap() {
                out.push((
                    p["author"].as_str().unwrap().to_string(),
                    p["seq"].as_u64().unwrap(),
                    p["body"].as_str().unwrap().to_string(),
                ));
            }
            match page["next_cursor"].as_str() {
                Some(c) => cursor = c.to_string(),
                None => return out,
            }
        }
    }

    /// SIGKILL, no chance to clean up.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then waits for a clean exit (SIGKILL after the deadline).
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            if Instant::now() > deadline {
                self.kill9();
                panic!("daemon did not stop within 15 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// One node of a running devnet, as `starling devnet` describes it.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct DevnetNode {
    pub name: String,
    pub web_ui: String,
    pub api: String,
    pub peer_id: String,
    pub data_dir: String,
}

impl DevnetNode {
    /// The node's origin, `http://127.0.0.1:PORT`.
    pub fn origin(&self) -> String {
        self.api.trim_end_matches("/api/v1").to_string()
    }

    pub fn client(&self) -> Api {
        let token = std::fs::read_to_string(std::path::Path::new(&self.data_dir).join("api.token"))
            .unwrap()
            .trim()
            .to_string();
        Api {
            url: self.origin(),
            token,
            http: reqwest::Client::builder().no_proxy().build().unwrap(),
        }
    }
}

/// `starling devnet` as a child process; stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Devnet {
    child: Child,
    pub nodes: Vec<DevnetNode>,
    _tmp: tempfile::TempDir,
}

impl Devnet {
    pub fn start(args: &[&str]) -> Self {
        use std::io::BufRead;
        let tmp = tempfile::tempdir().unwrap();
        let mut child = Command::new(BIN)
            .arg("devnet")
            .arg("--dir")
            .arg(tmp.path())
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(tmp.path().join("devnet.err")).unwrap())
            .spawn()
            .expect("spawn starling devnet");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if let Some(json) = line.strip_prefix("JSON: ") {
                    let _ = tx.send(json.to_string());
                }
            }
        });
        let mut devnet = Self {
            child,
            nodes: Vec::new(),
            _tmp: tmp,
        };
        let json = match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(j) => j,
            Err(_) => {
                let err = std::fs::read_to_string(devnet._tmp.path().join("devnet.err"))
                    .unwrap_or_default();
                panic!("devnet did not come up within 120 s: {err}");
            }
        };
        let v: Value = serde_json::from_str(&json).unwrap();
        devnet.nodes = serde_json::from_value(v["nodes"].clone()).unwrap();
        devnet
    }

    pub fn node(&self, name: &str) -> &DevnetNode {
        self.nodes.iter().find(|n| n.name == name).unwrap()
    }

    /// SIGTERM; waits for every node to stop.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            assert!(Instant::now() < deadline, "devnet did not stop within 30 s");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Devnet {
    fn drop(&mut self) {
        // Its nodes stop by themselves when it dies (their stdin closes).
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
