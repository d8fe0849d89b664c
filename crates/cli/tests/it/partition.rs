//! Issue 14: partition and heal. Six nodes, each a host in a network namespace on
//! one bridge (10.98.0.0/24), all following each other. nftables DROP rules cut
//! them 3|3 while both sides post and change whom they follow, across the cut and
//! within each side; each side keeps working on its own. Healed, the history
//! checker must pass within a bounded time: every post everywhere it belongs, every
//! acknowledged statement delivered. Traffic stays inside the namespaces.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::harness::{Profile, wait_for};
use crate::history::History;
use crate::netns::{NsNode, ipn, nft, run};

const N: usize = 6;
const NAMES: [&str; N] = ["ann", "ben", "cat", "dan", "eve", "fay"];

struct Lab {
    prefix: String,
    made: Vec<String>,
}

impl Lab {
    fn ns(&self, k: usize) -> String {
        format!("{}-{k}", self.prefix)
    }

    fn switch(&self) -> String {
        format!("{}-br", self.prefix)
    }

    fn new() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let mut lab = Lab {
            prefix: format!(
                "stpart{}x{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ),
            made: Vec::new(),
        };
        let br = lab.switch();
        run("ip", &["netns", "add", &br]);
        lab.made.push(br.clone());
        ipn(&br, &["link", "add", "br0", "type", "bridge"]);
        ipn(&br, &["link", "set", "br0", "up"]);
        for k in 0..N {
            let ns = lab.ns(k);
            run("ip", &["netns", "add", &ns]);
            lab.made.push(ns.clone());
            let port = format!("p{k}");
            ipn(&ns, &["link", "set", "lo", "up"]);
            ipn(
                &ns,
                &[
                    "link", "add", "eth0", "type", "veth", "peer", "name", &port, "netns", &br,
                ],
            );
            ipn(
                &ns,
                &[
                    "addr",
                    "add",
                    &format!("10.98.0.{}/24", k + 1),
                    "dev",
                    "eth0",
                ],
            );
            ipn(&ns, &["link", "set", "eth0", "up"]);
            ipn(&br, &["link", "set", &port, "master", "br0", "up"]);
        }
        lab
    }

    /// Cuts {0,1,2} from {3,4,5}: each host drops everything to and from the other
    /// side (silently, as a broken link does).
    fn partition(&self) {
        for k in 0..N {
            let others: Vec<String> = (0..N)
                .filter(|j| (j < &3) != (k < 3))
                .map(|j| format!("10.98.0.{}", j + 1))
                .collect();
            let set = others.join(", ");
            nft(
                &self.ns(k),
                &format!(
                    "table inet cut {{\n\
                       chain out {{ type filter hook output priority 0; ip daddr {{ {set} }} drop; }}\n\
                       chain in {{ type filter hook input priority 0; ip saddr {{ {set} }} drop; }}\n\
                     }}\n"
                ),
            );
        }
    }

    fn heal(&self) {
        for k in 0..N {
            run(
                "ip",
                &[
                    "netns",
                    "exec",
                    &self.ns(k),
                    "nft",
                    "delete",
                    "table",
                    "inet",
                    "cut",
                ],
            );
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for ns in &self.made {
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", ns])
                .status();
        }
    }
}

fn config(boot: Option<&str>) -> String {
    let boot = boot.map_or(String::new(), |b| format!("\"{b}\""));
    format!(
        "listen = [\"/ip4/0.0.0.0/tcp/0\"]\n\
         bootstrap = [{boot}]\n\
         dht_refresh = \"off\"\n\
         maintenance_interval = \"2s\"\n"
    )
}

fn post(h: &mut History, node: &NsNode, text: &str) {
    let view = node.json(&["post", text]);
    h.post(&node.name, &view);
}

fn follow(h: &mut History, node: &NsNode, whom: &NsNode, key: &str) {
    node.json(&["follow", key]);
    h.follow(&node.name, &whom.name);
}

fn unfollow(h: &mut History, node: &NsNode, whom: &NsNode, key: &str) {
    node.json(&["unfollow", key]);
    h.unfollow(&node.name, &whom.name);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_heals_and_loses_nothing() {
    let lab = Lab::new();
    let profiles: Vec<Profile> = NAMES.iter().map(|n| Profile::init(n)).collect();
    let mut nodes: Vec<NsNode> = Vec::new();
    let first = NsNode::start(&lab.ns(0), NAMES[0], &profiles[0], &config(None)).await;
    let boot = first.addr();
    nodes.push(first);
    for k in 1..N {
        nodes.push(NsNode::start(&lab.ns(k), NAMES[k], &profiles[k], &config(Some(&boot))).await);
    }
    let keys: Vec<String> = nodes
        .iter()
        .map(|n| n.json(&["whoami"])["peer_id"].as_str().unwrap().to_string())
        .collect();
    let mut h = History::default();
    for i in 0..N {
        let others: Vec<&str> = (0..N)
            .filter(|j| *j != i)
            .map(|j| keys[j].as_str())
            .collect();
        let mut args = vec!["follow"];
        args.extend(others);
        nodes[i].json(&args);
        for j in (0..N).filter(|j| *j != i) {
            h.follow(NAMES[i], NAMES[j]);
        }
    }
    wait_for(
        Duration::from_secs(90),
        "every follow to be acknowledged",
        || async {
            nodes.iter().all(|n| {
                n.json(&["following"])
                    .as_array()
                    .is_some_and(|f| f.len() == N - 1 && f.iter().all(|x| x["pending"] == false))
            })
        },
    )
    .await
    .unwrap();
    for n in &nodes {
        post(&mut h, n, &format!("{} before the cut", n.name));
    }

    lab.partition();
    h.fault("partition {ann, ben, cat} | {dan, eve, fay}".into());
    for round in 0..3 {
        for n in &nodes {
            post(&mut h, n, &format!("{} during the cut, {round}", n.name));
        }
    }
    // Across the cut (delivered only after it heals) and within a side.
    unfollow(&mut h, &nodes[1], &nodes[4], &keys[4]);
    unfollow(&mut h, &nodes[4], &nodes[1], &keys[1]);
    unfollow(&mut h, &nodes[2], &nodes[0], &keys[0]);
    follow(&mut h, &nodes[2], &nodes[0], &keys[0]);
    unfollow(&mut h, &nodes[5], &nodes[3], &keys[3]);
    // Each side works on its own: ben gets ann's posts from during the cut.
    wait_for(
        Duration::from_secs(60),
        "ben to get ann's posts within his side",
        || async { nodes[1].has_post("ann during the cut, 2") },
    )
    .await
    .unwrap();
    assert!(
        !nodes[4].has_post("ann during the cut, 2"),
        "nothing crosses the cut"
    );

    lab.heal();
    h.fault("healed".into());
    let named: Vec<(&str, &NsNode)> = NAMES.iter().copied().zip(nodes.iter()).collect();
    let took = h
        .assert_holds(&named, Duration::from_secs(120), "after the heal")
        .await;
    eprintln!(
        "the history held {:.1} s after the heal",
        took.as_secs_f64()
    );
    for n in nodes {
        n.stop().await;
    }
}
