//! Hosts made of network namespaces, for the tests across NATs and partitions:
//! running tools, and a user's node inside a namespace ([`NsNode`]), whose API is
//! on that namespace's loopback, so its client commands run there too.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::harness::{BIN, Process, Profile, stderr, wait_for};

const WAIT: Duration = Duration::from_secs(90);

/// Runs `program` and fails the test with its output if it fails.
pub fn run(program: &str, args: &[&str]) -> Output {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {} failed: {}",
        args.join(" "),
        stderr(&out)
    );
    out
}

/// `ip -n <ns> <args>`.
pub fn ipn(ns: &str, args: &[&str]) {
    let mut all = vec!["-n", ns];
    all.extend_from_slice(args);
    run("ip", &all);
}

/// Loads an nftables ruleset into namespace `ns`.
pub fn nft(ns: &str, rules: &str) {
    use std::io::Write;
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot run nft (apt package nftables)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(rules.as_bytes())
        .expect("write rules");
    let out = child.wait_with_output().expect("nft");
    assert!(out.status.success(), "nft in {ns}: {}", stderr(&out));
}

/// `starling` run inside namespace `ns`.
pub fn starling_in(ns: &str) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns, BIN])
        .env_remove("STARLING_DATA_DIR")
        .env_remove("STARLING_PROFILE");
    c
}

pub fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    format!(
        "{}:\n{}",
        path.display(),
        lines[lines.len().saturating_sub(30)..].join("\n")
    )
}

/// A user's node in a namespace; stopped (killed) when dropped.
pub struct NsNode {
    ns: String,
    pub name: String,
    dir: PathBuf,
    process: Option<Process>,
}

impl NsNode {
    /// `starling up` of `profile` in namespace `ns`, with `config` as its config
    /// file; waits until it answers.
    pub async fn start(ns: &str, name: &str, profile: &Profile, config: &str) -> NsNode {
        std::fs::write(profile.dir.join("config.toml"), config).unwrap();
        let log = std::fs::File::create(profile.dir.join("daemon.log")).unwrap();
        let mut cmd = starling_in(ns);
        cmd.arg("--data-dir")
            .arg(&profile.dir)
            .args(["up", "--stop-on-stdin-eof", "--api-addr", "127.0.0.1:0"])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .env(
                "RUST_LOG",
                std::env::var("STARLING_TEST_LOG").unwrap_or_else(|_| "info".into()),
            );
        let process = Process::spawn(&mut cmd).expect("start starling up");
        let node = NsNode {
            ns: ns.to_string(),
            name: name.to_string(),
            dir: profile.dir.clone(),
            process: Some(process),
        };
        wait_for(WAIT, &format!("{name}'s daemon to answer"), || async {
            node.try_json(&["status"])
        })
        .await
        .unwrap_or_else(|e| panic!("{e}; {}", node.log()));
        node
    }

    pub fn try_json(&self, args: &[&str]) -> Option<Value> {
        let out = starling_in(&self.ns)
            .arg("--data-dir")
            .arg(&self.dir)
            .arg("--json")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .ok()?;
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }

    pub fn json(&self, args: &[&str]) -> Value {
        self.try_json(args)
            .unwrap_or_else(|| panic!("starling {args:?} in {} failed; {}", self.name, self.log()))
    }

    pub fn status(&self) -> Value {
        self.json(&["status"])
    }

    pub fn log(&self) -> String {
        log_tail(&self.dir.join("daemon.log"))
    }

    /// Whether a post whose text is `text` is in the timeline.
    pub fn has_post(&self, text: &str) -> bool {
        self.json(&["timeline"])["posts"]
            .as_array()
            .is_some_and(|ps| ps.iter().any(|p| p["body"] == text))
    }

    /// Its first listen address that is not loopback (to bootstrap from).
    pub fn addr(&self) -> String {
        self.status()["network"]["listen_addrs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| a.as_str())
            .find(|a| !a.contains("/127.0.0.1/") && a.contains("/tcp/"))
            .unwrap_or_else(|| panic!("{} has no address", self.name))
            .to_string()
    }

    pub async fn stop(mut self) {
        if let Some(p) = self.process.take() {
            p.stop(Duration::from_secs(20)).await.expect("clean stop");
        }
    }
}

impl crate::history::Reader for NsNode {
    async fn read(&self, args: &[&str]) -> anyhow::Result<Value> {
        self.try_json(args)
            .ok_or_else(|| anyhow::anyhow!("starling {args:?} in {} failed", self.name))
    }
}
