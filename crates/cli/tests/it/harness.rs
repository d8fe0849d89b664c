//! Test harness: profiles in temporary directories, `starling` commands run to
//! completion, and daemons and devnets as child processes, started and stopped
//! through `starling_cli::kit` (which also provides `wait_for`).

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use reqwest::Method;
use serde_json::Value;
pub use starling_cli::kit::{Client, Daemon, Process, wait_for};
use starling_node::ProfileDir;

pub const BIN: &str = env!("CARGO_BIN_EXE_starling");

/// The `starling` binary, untouched by the caller's profile variables.
fn starling() -> Command {
    let mut c = Command::new(BIN);
    c.env_remove("STARLING_DATA_DIR")
        .env_remove("STARLING_PROFILE");
    c
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

    /// The profile already in `dir` (kept by the caller).
    pub fn at(dir: &std::path::Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
            _tmp: None,
        }
    }

    pub fn command(&self) -> Command {
        let mut c = starling();
        c.arg("--data-dir").arg(&self.dir);
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
    /// until its API answers. `STARLING_TEST_LOG` sets its `RUST_LOG`.
    pub async fn up(&self, extra: &[&str]) -> Daemon {
        self.try_up(extra).await.unwrap()
    }

    /// [`Profile::up`] with the daemon's wall clock moved by `offset` through
    /// libfaketime (e.g. `"+31d"`): a node living in the future. Its monotonic clock
    /// stays true, as on a machine whose date is wrong (and libfaketime's faked
    /// monotonic clock would stretch every timed wait by the offset).
    pub async fn up_at(&self, offset: &str, extra: &[&str]) -> Daemon {
        let lib = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";
        assert!(
            std::path::Path::new(lib).exists(),
            "{lib} is missing: apt-get install faketime"
        );
        let mut cmd = self.daemon_command();
        cmd.env("LD_PRELOAD", lib)
            .env("FAKETIME", offset)
            .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
        Daemon::start(cmd, &ProfileDir::new(&self.dir), extra)
            .await
            .unwrap()
    }

    /// When the claim for `handle` that this profile's node stores for its owner
    /// expires (Unix ms), if it has persisted one.
    pub fn stored_claim_expiry(&self, handle: &str) -> Option<u64> {
        let db = rusqlite::Connection::open(ProfileDir::new(&self.dir).db_path()).ok()?;
        db.query_row(
            "SELECT expires_at FROM dht_records WHERE key = ?1",
            [format!("/starling/name/{handle}").into_bytes()],
            |r| r.get::<_, i64>(0),
        )
        .ok()
        .map(|v| v as u64)
    }

    /// The newest seq named by `owner`'s profile record as this profile's node
    /// stores it for the DHT (on disk), if it holds one.
    pub fn stored_profile_head(&self, owner: &starling_core::AuthorId) -> Option<u64> {
        let db = rusqlite::Connection::open(ProfileDir::new(&self.dir).db_path()).ok()?;
        let key = starling_core::records::profile_key(owner);
        let value: Vec<u8> = db
            .query_row(
                "SELECT value FROM dht_records WHERE key = ?1",
                [&key],
                |r| r.get(0),
            )
            .ok()?;
        starling_core::records::ProfileRecord::from_record(&key, &value)
            .ok()
            .map(|p| p.head_seq)
    }

    fn daemon_command(&self) -> Command {
        let mut cmd = starling();
        cmd.env(
            "RUST_LOG",
            std::env::var("STARLING_TEST_LOG")
                .unwrap_or_else(|_| "info,starling_node=debug".into()),
        );
        cmd
    }

    /// [`Profile::up`], failing with what the daemon said if it does not start.
    pub async fn try_up(&self, extra: &[&str]) -> anyhow::Result<Daemon> {
        Daemon::start(self.daemon_command(), &ProfileDir::new(&self.dir), extra).await
    }

    /// Plain `starling up`, as a user types it: the default ports (7420 for the API,
    /// 7421 for peers on every interface; free ones when those are taken).
    pub async fn up_plain(&self) -> Daemon {
        Daemon::start_plain(self.daemon_command(), &ProfileDir::new(&self.dir))
            .await
            .unwrap()
    }
}

/// A free loopback port below the ephemeral range (32768-60999), for a daemon that
/// must come back on the same address (a browser's session cookie is named after
/// it): the kernel never hands these out for port 0, so nothing takes it between
/// two runs. 10000-19999 (the churn test's block starts at 20000).
pub fn free_fixed_port() -> u16 {
    for _ in 0..1000 {
        let port = fastrand::u16(10_000..20_000);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in 10000-19999 on 127.0.0.1");
}

/// The daemon's handle state (`registered`, `pending`, `taken`...), from `/whoami`.
pub async fn handle_state(d: &Daemon) -> Value {
    d.get("/whoami").await.unwrap()["handle_state"].clone()
}

/// The daemon's OpenAPI document (served without the token), as served.
pub async fn openapi_raw(d: &Daemon) -> Vec<u8> {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(format!("{}/api/openapi.json", d.url()))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec()
}

/// The daemon's OpenAPI document (served without the token).
pub async fn openapi(d: &Daemon) -> Value {
    serde_json::from_slice(&openapi_raw(d).await).unwrap()
}

/// Waits until the first follow of `p` is acknowledged by the followee.
pub async fn wait_acknowledged(p: &Profile, what: &str) {
    wait_for(
        Duration::from_secs(60),
        &format!("{what} to be acknowledged"),
        || async { p.cli_json(&["following"])[0]["pending"] == false },
    )
    .await
    .unwrap();
}

/// Waits until the daemon's handle is registered.
pub async fn wait_registered(d: &Daemon) {
    wait_for(
        Duration::from_secs(120),
        "the handle to be registered",
        || async { (handle_state(d).await["state"] == "registered").then_some(()) },
    )
    .await
    .unwrap();
}

/// A counter of the network's part of `status` (0 when never counted).
pub fn net_counter(st: &Value, name: &str) -> u64 {
    st["network"]["counters"][name].as_u64().unwrap_or(0)
}

/// Resident memory of a process, KiB.
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// `GET path`: the status and body of the answer, whatever the status.
pub async fn get_raw(d: &Daemon, path: &str) -> (u16, Value) {
    d.client().raw(Method::GET, path, None).await.unwrap()
}

/// `POST path`: the status and body of the answer, whatever the status.
pub async fn post_raw(d: &Daemon, path: &str, body: &Value) -> (u16, Value) {
    d.client()
        .raw(Method::POST, path, Some(body))
        .await
        .unwrap()
}

/// `GET /status`.
pub async fn status(d: &Daemon) -> Value {
    d.get("/status").await.unwrap()
}

/// An address other nodes can bootstrap from.
pub async fn addr(d: &Daemon) -> String {
    d.bootstrap_addr().await.unwrap()
}

/// `(author, seq, body)` of the whole timeline, newest first.
pub async fn timeline(d: &Daemon) -> Vec<(String, u64, String)> {
    let mut out = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = d
            .get(&format!("/timeline?limit=500&before={cursor}"))
            .await
            .unwrap();
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

    pub fn client(&self) -> Client {
        Client::for_profile(&ProfileDir::new(&self.data_dir)).unwrap()
    }
}

/// `starling devnet` as a child process; stopped when dropped (its nodes stop by
/// themselves when it does).
pub struct Devnet {
    process: Process,
    pub nodes: Vec<DevnetNode>,
    _tmp: tempfile::TempDir,
}

impl Devnet {
    pub fn start(args: &[&str]) -> Self {
        use std::io::BufRead;
        let tmp = tempfile::tempdir().unwrap();
        let mut process = Process::spawn(
            starling()
                .arg("devnet")
                .arg("--dir")
                .arg(tmp.path())
                .args(args)
                .env("RUST_LOG", "warn")
                .stdout(Stdio::piped())
                .stderr(std::fs::File::create(tmp.path().join("devnet.err")).unwrap()),
        )
        .expect("spawn starling devnet");
        let stdout = process.take_stdout().unwrap();
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
        let json = match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(j) => j,
            Err(_) => {
                let err =
                    std::fs::read_to_string(tmp.path().join("devnet.err")).unwrap_or_default();
                panic!("devnet did not come up within 120 s: {err}");
            }
        };
        let v: Value = serde_json::from_str(&json).unwrap();
        Self {
            process,
            nodes: serde_json::from_value(v["nodes"].clone()).unwrap(),
            _tmp: tmp,
        }
    }

    pub fn node(&self, name: &str) -> &DevnetNode {
        self.nodes.iter().find(|n| n.name == name).unwrap()
    }

    /// SIGTERM; waits for every node to stop.
    pub async fn stop(self) -> std::process::ExitStatus {
        self.process.stop(Duration::from_secs(30)).await.unwrap()
    }
}
