//! Issue 13: reach across home routers. Network namespaces made by the test are the
//! hosts: a public network (a bridge) with a relay, and two private LANs, each
//! behind its own NAT (nftables masquerade). alice (LAN 2) and bob (LAN 1) cannot
//! dial each other; both reserve a slot on the relay. bob follows alice and gets her
//! posts:
//! - behind NATs that map every connection to a random port (symmetric NAT), hole
//!   punching cannot work: the posts come through the relay;
//! - behind port-preserving NATs (Linux's default masquerade), hole punching gives a
//!   direct connection, the relayed one is dropped, and the posts come direct.
//!
//! Traffic stays inside the namespaces: the public network is 10.99.0.0/24, the
//! LANs 192.168.1.0/24 and 192.168.2.0/24, and no namespace has a route out.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde_json::Value;

use crate::harness::{BIN, Process, Profile, stderr, wait_for};
use crate::netns::{NsNode, log_tail, run};

const WAIT: Duration = Duration::from_secs(90);
const RELAY_IP: &str = "10.99.0.1";
const RELAY_PORT: u16 = 4001;

/// How a NAT maps the ports of outgoing connections.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum NatKind {
    /// Keeps the source port when it can (Linux's default): hole punching works.
    PortPreserving,
    /// A random port for every connection (`fully-random`), like a symmetric NAT:
    /// hole punching cannot work.
    Random,
}

/// The namespaces of one test; deleted (with their links) when dropped.
struct Lab {
    prefix: String,
    names: Vec<String>,
}

impl Lab {
    fn ns(&self, role: &str) -> String {
        format!("{}-{role}", self.prefix)
    }

    fn ip(&self, args: &[&str]) {
        run("ip", args);
    }

    /// In namespace `role`: `ip -n <ns> <args>`.
    fn ipn(&self, role: &str, args: &[&str]) {
        crate::netns::ipn(&self.ns(role), args);
    }

    fn exec(&self, role: &str, args: &[&str]) -> Output {
        let ns = self.ns(role);
        let mut all = vec!["netns", "exec", ns.as_str()];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// pub (bridge 10.99.0.1, the relay's host), natN (10.99.0.1N outside,
    /// 192.168.N.1 inside), lanN (192.168.N.2, default route through natN).
    fn new(kind: NatKind) -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let prefix = format!(
            "stnat{}x{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let mut lab = Lab {
            prefix,
            names: Vec::new(),
        };
        for role in ["pub", "nat1", "lan1", "nat2", "lan2"] {
            let ns = lab.ns(role);
            lab.ip(&["netns", "add", &ns]);
            lab.names.push(ns);
            lab.ipn(role, &["link", "set", "lo", "up"]);
        }
        lab.ipn("pub", &["link", "add", "br0", "type", "bridge"]);
        lab.ipn(
            "pub",
            &["addr", "add", &format!("{RELAY_IP}/24"), "dev", "br0"],
        );
        lab.ipn("pub", &["link", "set", "br0", "up"]);
        for i in ["1", "2"] {
            let (nat, lan) = (format!("nat{i}"), format!("lan{i}"));
            let port = format!("up{i}");
            lab.ipn(
                &nat,
                &[
                    "link",
                    "add",
                    "wan",
                    "type",
                    "veth",
                    "peer",
                    "name",
                    &port,
                    "netns",
                    &lab.ns("pub"),
                ],
            );
            lab.ipn("pub", &["link", "set", &port, "master", "br0", "up"]);
            lab.ipn(
                &nat,
                &["addr", "add", &format!("10.99.0.1{i}/24"), "dev", "wan"],
            );
            lab.ipn(&nat, &["link", "set", "wan", "up"]);
            lab.ipn(
                &nat,
                &[
                    "link",
                    "add",
                    "lan",
                    "type",
                    "veth",
                    "peer",
                    "name",
                    "eth0",
                    "netns",
                    &lab.ns(&lan),
                ],
            );
            lab.ipn(
                &nat,
                &["addr", "add", &format!("192.168.{i}.1/24"), "dev", "lan"],
            );
            lab.ipn(&nat, &["link", "set", "lan", "up"]);
            lab.ipn(
                &lan,
                &["addr", "add", &format!("192.168.{i}.2/24"), "dev", "eth0"],
            );
            lab.ipn(&lan, &["link", "set", "eth0", "up"]);
            lab.ipn(
                &lan,
                &["route", "add", "default", "via", &format!("192.168.{i}.1")],
            );
            lab.exec(&nat, &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
            let mapping = match kind {
                NatKind::PortPreserving => "masquerade",
                NatKind::Random => "masquerade fully-random",
            };
            // The home router: the LAN's connections leave with the router's
            // address; nothing from outside gets in unless it answers one of them,
            // and what does not is dropped without a word (no reset).
            let rules = format!(
                "table ip nat {{\n\
                   chain post {{\n\
                     type nat hook postrouting priority srcnat;\n\
                     oifname \"wan\" {mapping}\n\
                   }}\n\
                 }}\n\
                 table ip filter {{\n\
                   chain input {{\n\
                     type filter hook input priority filter; policy accept;\n\
                     iifname \"wan\" ct state new drop\n\
                   }}\n\
                   chain forward {{\n\
                     type filter hook forward priority filter; policy drop;\n\
                     ct state established,related accept\n\
                     iifname \"lan\" oifname \"wan\" accept\n\
                   }}\n\
                 }}\n"
            );
            lab.nft(&nat, &rules);
        }
        lab
    }

    fn nft(&self, role: &str, rules: &str) {
        crate::netns::nft(&self.ns(role), rules);
    }

    /// `starling <args>` run in namespace `role`.
    fn starling(&self, role: &str) -> Command {
        crate::netns::starling_in(&self.ns(role))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in &self.names {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

fn counter(status: &Value, name: &str) -> u64 {
    status["network"]["counters"][name].as_u64().unwrap_or(0)
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// Starts `starling ... relay` (`cmd`), its log in `dir/relay.log`; returns it and
/// its peer id, from the first line it prints.
fn spawn_relay(mut cmd: Command, dir: &Path) -> (Process, String) {
    use std::io::{BufRead, Write};
    let log = std::fs::File::create(dir.join("relay.log")).unwrap();
    cmd.stdout(Stdio::piped()).stderr(log).env(
        "RUST_LOG",
        std::env::var("STARLING_TEST_LOG").unwrap_or_else(|_| "info".into()),
    );
    let mut process = Process::spawn(&mut cmd).expect("start starling relay");
    let stdout = process.take_stdout().expect("stdout");
    // Its output is read to the end (into relay.out) so that it never writes to a
    // closed pipe; the first line names its peer id.
    let (first_tx, first_rx) = std::sync::mpsc::channel();
    let out_path = dir.join("relay.out");
    std::thread::spawn(move || {
        let mut copy = std::fs::File::create(out_path).expect("relay.out");
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let _ = first_tx.send(line.clone());
            let _ = writeln!(copy, "{line}");
        }
    });
    let first = first_rx.recv_timeout(WAIT).unwrap_or_default();
    let peer = first
        .strip_prefix("starling relay: ")
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| {
            panic!(
                "relay did not start: {first:?}; {}",
                log_tail(&dir.join("relay.log"))
            )
        })
        .to_string();
    (process, peer)
}

/// The relay in the public namespace, its limits in its config file; returns it
/// and its bootstrap address over `transport` (`tcp` or `quic`).
fn start_relay(lab: &Lab, dir: &Path, transport: &str) -> (Process, String) {
    let config = dir.join("relay.toml");
    let tcp = format!("/ip4/{RELAY_IP}/tcp/{RELAY_PORT}");
    let quic = format!("/ip4/{RELAY_IP}/udp/{RELAY_PORT}/quic-v1");
    std::fs::write(
        &config,
        format!(
            "listen = [\"{tcp}\", \"{quic}\"]\n\
             external_addrs = [\"{tcp}\", \"{quic}\"]\n\
             dht_refresh = \"off\"\n\
             autonat_private_ips = true\n\
             [relay]\n\
             max_reservations = 8\n\
             max_circuits = 8\n\
             max_circuit_duration = \"5m\"\n\
             max_circuit_bytes = 1048576\n"
        ),
    )
    .unwrap();
    let mut cmd = lab.starling("pub");
    cmd.arg("--data-dir")
        .arg(dir.join("relay"))
        .arg("relay")
        .arg("--config")
        .arg(&config);
    let (process, peer) = spawn_relay(cmd, dir);
    let addr = if transport == "quic" { quic } else { tcp };
    (process, format!("{addr}/p2p/{peer}"))
}

/// Both users are behind NAT (of `kind`) and reach the relay over `transport`;
/// each learns it is private (AutoNAT), reserves a slot on the relay and advertises
/// it. bob follows alice by key and reads her posts: through the relay when hole
/// punching fails, over a direct connection when it works.
async fn follow_across_nats(kind: NatKind, transport: &str) {
    let lab = Lab::new(kind);
    let mut tmp = tempfile::tempdir().unwrap();
    if std::env::var_os("STARLING_TEST_KEEP").is_some() {
        eprintln!("keeping the relay's files in {}", tmp.path().display());
        tmp.disable_cleanup(true);
    }
    let (relay, boot) = start_relay(&lab, tmp.path(), transport);
    let (alice_p, bob_p) = (Profile::init("alice"), Profile::init("bob"));
    let config = format!(
        "listen = [\"/ip4/0.0.0.0/tcp/0\", \"/ip4/0.0.0.0/udp/0/quic-v1\"]\n\
         bootstrap = [\"{boot}\"]\n\
         dht_refresh = \"off\"\n\
         autonat_private_ips = true\n"
    );
    let alice = NsNode::start(&lab.ns("lan2"), "lan2", &alice_p, &config).await;
    let bob = NsNode::start(&lab.ns("lan1"), "lan1", &bob_p, &config).await;
    let alice_key = alice.status()["peer_id"].as_str().unwrap().to_string();

    for node in [&alice, &bob] {
        let st = wait_for(
            WAIT,
            &format!("{} to hold a relay slot", node.name),
            || async {
                let st = node.status();
                let relayed = strings(&st["network"]["listen_addrs"])
                    .iter()
                    .any(|a| a.contains("/p2p-circuit"));
                (relayed && !strings(&st["network"]["relays"]).is_empty()).then_some(st)
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e}; {}", node.log()));
        assert!(counter(&st, "relay_reservations_made") >= 1, "{st}");
    }
    // AutoNAT: the relay dialed back and could not get in.
    for node in [&alice, &bob] {
        wait_for(
            WAIT,
            &format!("{} to learn it is behind NAT", node.name),
            || async { node.status()["network"]["reachability"] == "private" },
        )
        .await
        .unwrap_or_else(|e| panic!("{e}; {}", node.log()));
    }

    let out = bob.json(&["follow", &alice_key]);
    assert_eq!(out["peer_id"], alice_key.as_str(), "{out}");
    wait_for(WAIT, "alice to acknowledge bob's follow", || async {
        bob.json(&["following"])[0]["pending"] == false
    })
    .await
    .unwrap_or_else(|e| panic!("{e}; {}\n{}", bob.log(), alice.log()));

    alice.json(&["post", "hello from behind NAT 2"]);
    wait_for(WAIT, "alice's post to reach bob", || async {
        bob.has_post("hello from behind NAT 2")
    })
    .await
    .unwrap_or_else(|e| panic!("{e}; {}\n{}", bob.log(), alice.log()));

    match kind {
        NatKind::Random => {
            // The relay carries it: no direct connection, hole punching failed.
            let st = wait_for(WAIT, "hole punching to give up", || async {
                let st = bob.status();
                let a = alice.status();
                (counter(&st, "holepunch_failed") + counter(&a, "holepunch_failed") >= 1)
                    .then_some(st)
            })
            .await
            .unwrap_or_else(|e| panic!("{e}; {}\n{}", bob.log(), alice.log()));
            assert!(
                strings(&st["network"]["relayed_peers"]).contains(&alice_key),
                "bob reaches alice through the relay only: {st}"
            );
            alice.json(&["post", "still relayed"]);
            wait_for(
                WAIT,
                "the second post to come through the relay",
                || async { bob.has_post("still relayed") },
            )
            .await
            .unwrap();
            let st = bob.status();
            assert!(
                strings(&st["network"]["relayed_peers"]).contains(&alice_key),
                "{st}"
            );
            assert!(counter(&st, "relay_circuits_dialed") >= 1, "{st}");
            assert_eq!(counter(&st, "holepunch_succeeded"), 0, "{st}");
        }
        NatKind::PortPreserving => {
            // Hole punching succeeds; the relayed connection is dropped.
            wait_for(
                WAIT,
                "a direct connection between bob and alice",
                || async {
                    let st = bob.status();
                    let peers = strings(&st["network"]["peers"]);
                    let relayed = strings(&st["network"]["relayed_peers"]);
                    // Over the transport the peers reached the relay with: the one
                    // whose addresses the relay saw.
                    let name = format!("holepunch_succeeded_{transport}");
                    let punched = counter(&st, &name) + counter(&alice.status(), &name);
                    (punched >= 1 && peers.contains(&alice_key) && !relayed.contains(&alice_key))
                        .then_some(())
                },
            )
            .await
            .unwrap_or_else(|e| panic!("{e}; {}\n{}", bob.log(), alice.log()));
            alice.json(&["post", "now direct"]);
            wait_for(WAIT, "the post over the direct connection", || async {
                bob.has_post("now direct")
            })
            .await
            .unwrap();
            let st = bob.status();
            assert!(
                !strings(&st["network"]["relayed_peers"]).contains(&alice_key),
                "{st}"
            );
        }
    }
    bob.stop().await;
    alice.stop().await;
    relay
        .stop(Duration::from_secs(20))
        .await
        .expect("relay stops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_symmetric_nats_posts_come_through_the_relay() {
    follow_across_nats(NatKind::Random, "tcp").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_port_preserving_nats_hole_punching_gives_a_direct_path_over_tcp() {
    follow_across_nats(NatKind::PortPreserving, "tcp").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn behind_port_preserving_nats_hole_punching_gives_a_direct_path_over_quic() {
    follow_across_nats(NatKind::PortPreserving, "quic").await;
}

/// `starling relay` keeps its key (its peer id, in everyone's bootstrap list) and
/// the peers it knew across a restart: started again without `--bootstrap`, it
/// rejoins through the peers it remembered (`peers.json`). On loopback.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_keeps_its_identity_and_rejoins_through_remembered_peers() {
    let alice = Profile::init("alice");
    let a = alice.up(&[]).await;
    let boot = crate::harness::addr(&a).await;
    let tmp = tempfile::tempdir().unwrap();
    let relay_dir = tmp.path().join("relay");
    let relay = |extra: &[&str]| {
        let mut c = Command::new(BIN);
        c.env_remove("STARLING_DATA_DIR")
            .env_remove("STARLING_PROFILE")
            .arg("--data-dir")
            .arg(&relay_dir)
            .args([
                "relay",
                "--listen",
                "/ip4/127.0.0.1/tcp/0",
                "--dht-refresh",
                "off",
            ])
            .args(["--max-connections-per-ip", "0"])
            .args(extra);
        spawn_relay(c, tmp.path())
    };
    let connected = |peer: String| {
        let a = &a;
        async move {
            crate::harness::status(a).await["network"]["peers"]
                .as_array()
                .is_some_and(|ps| ps.iter().any(|p| p.as_str() == Some(peer.as_str())))
        }
    };

    let (first, id) = relay(&["--bootstrap", &boot]);
    wait_for(WAIT, "the relay to join alice", || connected(id.clone()))
        .await
        .unwrap();
    first
        .stop(Duration::from_secs(20))
        .await
        .expect("relay stops");
    let saved = std::fs::read_to_string(relay_dir.join("peers.json")).expect("peers.json");
    assert!(
        saved.contains(&a.author().to_string()),
        "alice is remembered: {saved}"
    );
    wait_for(WAIT, "alice to see the relay go", || async {
        !connected(id.clone()).await
    })
    .await
    .unwrap();

    let (second, id2) = relay(&[]);
    assert_eq!(id2, id, "the same key after a restart");
    wait_for(
        WAIT,
        "the restarted relay to rejoin alice by itself",
        || connected(id.clone()),
    )
    .await
    .unwrap();
    // A user's profile is not a relay's directory.
    let out = alice.cli(&["relay", "--listen", "/ip4/127.0.0.1/tcp/0"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("user's profile"), "{}", stderr(&out));
    second
        .stop(Duration::from_secs(20))
        .await
        .expect("relay stops");
    a.stop().await.unwrap();
}
