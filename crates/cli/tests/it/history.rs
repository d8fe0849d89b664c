//! The history checker of the fault tests. A test records every operation the
//! nodes acknowledged (posts, follows, unfollows) and the faults it caused; at the
//! end [`History::check`] reads every node's state through its API and says what,
//! if anything, breaks Starling's promises:
//! - no acknowledged post is lost: its author still holds it (until it expires);
//! - every follower holds exactly its followees' unexpired posts, each once, in the
//!   author's order;
//! - nothing expired is shown;
//! - no acknowledged follow statement is lost: the follower lists the followee, and
//!   the followee lists the follower once it was delivered (an unfollow: neither).
//!
//! A violation names the operations involved. Posts that expire within [`MARGIN_MS`]
//! of the check are left out (the nodes' GC runs on its own schedule).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde_json::Value;

use crate::harness::Daemon;

/// How the checker reads a node: the client commands' JSON (`whoami`, `timeline
/// --limit 500 [--before C]`, `following`, `followers`), from the API of a node on
/// loopback or through the command line of one in a network namespace.
pub trait Reader {
    async fn read(&self, args: &[&str]) -> anyhow::Result<Value>;
}

impl Reader for Daemon {
    async fn read(&self, args: &[&str]) -> anyhow::Result<Value> {
        let path = match args {
            ["timeline", "--limit", n] => format!("/timeline?limit={n}"),
            ["timeline", "--limit", n, "--before", c] => format!("/timeline?limit={n}&before={c}"),
            [cmd] => format!("/{cmd}"),
            other => anyhow::bail!("no API path for {other:?}"),
        };
        Ok(self.get(&path).await?)
    }
}

/// Posts expiring this close to the check's time are not judged.
pub const MARGIN_MS: u64 = 5_000;

/// One thing that happened, in order.
#[derive(Debug, Clone)]
pub enum Op {
    /// `node` acknowledged its post `seq` (it returned the post).
    Post {
        node: String,
        seq: u64,
        expires_at: u64,
    },
    Follow {
        follower: String,
        followee: String,
    },
    Unfollow {
        follower: String,
        followee: String,
    },
    /// A fault the test caused (`kill -9 bob during ingest`, ...).
    Fault(String),
}

#[derive(Default, Clone)]
pub struct History {
    ops: Vec<Op>,
}

/// What one node shows: its key, and its timeline (author key, seq, expiry), newest
/// first.
struct Seen {
    key: String,
    timeline: Vec<(String, u64, u64)>,
    following: BTreeSet<String>,
    followers: BTreeSet<String>,
}

impl History {
    pub fn post(&mut self, node: &str, view: &Value) {
        self.ops.push(Op::Post {
            node: node.to_string(),
            seq: view["seq"].as_u64().expect("a post view has a seq"),
            expires_at: view["expires_at"].as_u64().expect("and an expiry"),
        });
    }

    pub fn follow(&mut self, follower: &str, followee: &str) {
        self.ops.push(Op::Follow {
            follower: follower.into(),
            followee: followee.into(),
        });
    }

    pub fn unfollow(&mut self, follower: &str, followee: &str) {
        self.ops.push(Op::Unfollow {
            follower: follower.into(),
            followee: followee.into(),
        });
    }

    pub fn fault(&mut self, what: String) {
        self.ops.push(Op::Fault(what));
    }

    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// The operations that concern `node` (its posts, its follows, its faults).
    fn involving(&self, node: &str) -> String {
        let mut out = String::new();
        for op in &self.ops {
            let hit = match op {
                Op::Post { node: n, .. } => n == node,
                Op::Follow { follower, followee } | Op::Unfollow { follower, followee } => {
                    follower == node || followee == node
                }
                Op::Fault(what) => what.contains(node),
            };
            if hit {
                let _ = writeln!(out, "    {op:?}");
            }
        }
        out
    }

    /// Checks every promise against what `nodes` (name, daemon) show at `now_ms`;
    /// returns the violations, each with the operations involved.
    pub async fn check<R: Reader>(&self, nodes: &[(&str, &R)], now_ms: u64) -> Vec<String> {
        let mut seen: BTreeMap<&str, Seen> = BTreeMap::new();
        for (name, d) in nodes {
            match read(*d).await {
                Ok(s) => {
                    seen.insert(name, s);
                }
                Err(e) => return vec![format!("cannot read {name}: {e}")],
            }
        }
        let name_of: BTreeMap<&str, &str> =
            seen.iter().map(|(n, s)| (s.key.as_str(), *n)).collect();
        let judged = |expires_at: u64| expires_at.abs_diff(now_ms) > MARGIN_MS;
        let mut bad = Vec::new();

        // Each author's own unexpired posts: the truth followers are held to.
        let mut own: BTreeMap<&str, BTreeMap<u64, u64>> = BTreeMap::new();
        for (name, s) in &seen {
            let mine: BTreeMap<u64, u64> = s
                .timeline
                .iter()
                .filter(|(a, _, _)| *a == s.key)
                .map(|(_, seq, exp)| (*seq, *exp))
                .collect();
            own.insert(name, mine);
        }
        for op in &self.ops {
            if let Op::Post {
                node,
                seq,
                expires_at,
            } = op
                && *expires_at > now_ms + MARGIN_MS
                && own.get(node.as_str()).is_some_and(|m| !m.contains_key(seq))
            {
                bad.push(format!(
                    "{node} lost its acknowledged post #{seq}\n{}",
                    self.involving(node)
                ));
            }
        }

        for (name, s) in &seen {
            let mut counted: BTreeMap<(&str, u64), usize> = BTreeMap::new();
            let mut last_seq: BTreeMap<&str, u64> = BTreeMap::new();
            for (author, seq, exp) in &s.timeline {
                *counted.entry((author.as_str(), *seq)).or_default() += 1;
                if *exp + MARGIN_MS < now_ms {
                    bad.push(format!(
                        "{name} shows {}'s post #{seq}, expired {} ms ago",
                        name_of.get(author.as_str()).unwrap_or(&author.as_str()),
                        now_ms - exp
                    ));
                }
                // Newest first: one author's seqs fall.
                if let Some(prev) = last_seq.insert(author.as_str(), *seq)
                    && prev <= *seq
                {
                    bad.push(format!(
                        "{name} shows {}'s post #{seq} after #{prev}: not the author's order",
                        name_of.get(author.as_str()).unwrap_or(&author.as_str())
                    ));
                }
            }
            for ((author, seq), n) in counted {
                if n > 1 {
                    bad.push(format!(
                        "{name} shows {}'s post #{seq} {n} times",
                        name_of.get(author).unwrap_or(&author)
                    ));
                }
            }
            for followee_key in &s.following {
                let Some(followee) = name_of.get(followee_key.as_str()) else {
                    continue;
                };
                let want: BTreeSet<u64> = own[followee]
                    .iter()
                    .filter(|(_, exp)| judged(**exp))
                    .map(|(seq, _)| *seq)
                    .collect();
                let have: BTreeSet<u64> = s
                    .timeline
                    .iter()
                    .filter(|(a, _, exp)| a == followee_key && judged(*exp))
                    .map(|(_, seq, _)| *seq)
                    .collect();
                if want != have {
                    bad.push(format!(
                        "{name} follows {followee} and holds its posts {:?}, not {:?} (missing {:?}, extra {:?})\n{}",
                        have,
                        want,
                        want.difference(&have).collect::<Vec<_>>(),
                        have.difference(&want).collect::<Vec<_>>(),
                        self.involving(followee)
                    ));
                }
            }
        }

        // The last acknowledged statement of each pair decides.
        let mut last: BTreeMap<(&str, &str), bool> = BTreeMap::new();
        for op in &self.ops {
            match op {
                Op::Follow { follower, followee } => {
                    last.insert((follower, followee), true);
                }
                Op::Unfollow { follower, followee } => {
                    last.insert((follower, followee), false);
                }
                _ => {}
            }
        }
        for ((follower, followee), follows) in last {
            let (Some(f), Some(e)) = (seen.get(follower), seen.get(followee)) else {
                continue;
            };
            if f.following.contains(&e.key) != follows {
                bad.push(format!(
                    "{follower} {} {followee}, against its last acknowledged statement\n{}",
                    if follows {
                        "does not follow"
                    } else {
                        "still follows"
                    },
                    self.involving(follower)
                ));
            }
            if e.followers.contains(&f.key) != follows {
                bad.push(format!(
                    "{followee} {} {follower} among its followers, against {follower}'s last statement\n{}",
                    if follows { "does not list" } else { "still lists" },
                    self.involving(follower)
                ));
            }
        }
        bad
    }
}

impl History {
    /// Waits (at most `limit`) until the history holds on `nodes`; fails the test
    /// with every violation and `context` (a seed to replay) if it never does.
    /// Returns how long it took.
    pub async fn assert_holds<R: Reader>(
        &self,
        nodes: &[(&str, &R)],
        limit: std::time::Duration,
        context: &str,
    ) -> std::time::Duration {
        let started = std::time::Instant::now();
        let now = starling_node::clock::system_ms;
        let told = std::sync::Mutex::new(started);
        let held = crate::harness::wait_for(limit, "the history to hold", || async {
            let v = self.check(nodes, now()).await;
            // What still stands, every 10 s (`--nocapture` shows it).
            let mut last = told.lock().expect("not poisoned");
            if !v.is_empty() && last.elapsed() >= std::time::Duration::from_secs(10) {
                *last = std::time::Instant::now();
                let first = v[0].lines().next().unwrap_or_default();
                eprintln!(
                    "{context}: {} violations after {:.0} s, the first: {first}",
                    v.len(),
                    started.elapsed().as_secs_f64()
                );
            }
            v.is_empty()
        })
        .await;
        if held.is_err() {
            let v = self.check(nodes, now()).await;
            panic!(
                "{context}: {} violations after {} operations:\n{}",
                v.len(),
                self.len(),
                v.join("\n")
            );
        }
        started.elapsed()
    }
}

/// A number from the environment (a seed, a soak's length), else `default`.
pub fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

async fn read<R: Reader>(d: &R) -> anyhow::Result<Seen> {
    let key = d.read(&["whoami"]).await?["peer_id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let mut timeline = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = match &cursor {
            None => d.read(&["timeline", "--limit", "500"]).await?,
            Some(c) => {
                d.read(&["timeline", "--limit", "500", "--before", c])
                    .await?
            }
        };
        for p in page["posts"].as_array().into_iter().flatten() {
            timeline.push((
                p["author"].as_str().unwrap_or_default().to_string(),
                p["seq"].as_u64().unwrap_or(0),
                p["expires_at"].as_u64().unwrap_or(0),
            ));
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    let keys = |v: Value| -> BTreeSet<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| f["peer_id"].as_str().map(String::from))
            .collect()
    };
    Ok(Seen {
        key,
        timeline,
        following: keys(d.read(&["following"]).await?),
        followers: keys(d.read(&["followers"]).await?),
    })
}
