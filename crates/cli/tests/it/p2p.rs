//! The peer-to-peer network, with real daemons on 127.0.0.1: following, push,
//! catch-up, following an offline user, handle claims, and expiry.

use std::time::Duration;

use serde_json::{Value, json};
use starling_node::ProfileDir;

use crate::harness::{
    Daemon, Profile, addr, handle_state, net_counter, post_raw, status, stderr, stdout, timeline,
    wait_acknowledged, wait_for, wait_registered,
};

const WAIT: Duration = Duration::from_secs(60);

/// Issue 12: follow statements in a batch. carol follows alice and bob in one
/// command, with her own key among the targets: the two are followed (one
/// transaction), delivered and acknowledged, and listed by their followees; the
/// third target gets its own error, and the command says so (exit status 1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_follows_in_one_batch() {
    let (alice, bob, carol) = (
        Profile::init("alice"),
        Profile::init("bob"),
        Profile::init("carol"),
    );
    let a = alice.up(&[]).await;
    let boot = addr(&a).await;
    let b = bob.up(&["--bootstrap", &boot]).await;
    let c = carol.up(&["--bootstrap", &boot]).await;
    let keys = [&a, &b, &c].map(|d| d.author().to_string());
    let out = carol.cli(&["--json", "follow", &keys[0], &keys[1], &keys[2]]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let outcomes: Value = serde_json::from_str(&stdout(&out)).unwrap();
    let outcomes = outcomes.as_array().unwrap();
    assert_eq!(outcomes.len(), 3, "{outcomes:?}");
    for (o, key) in outcomes[..2].iter().zip(&keys) {
        assert_eq!(o["target"], key.as_str());
        assert_eq!(o["followed"]["peer_id"], key.as_str(), "{o}");
    }
    assert_eq!(
        outcomes[2]["error"]["code"], "self_follow",
        "{}",
        outcomes[2]
    );
    wait_for(WAIT, "both follows to be acknowledged", || async {
        let f = carol.cli_json(&["following"]);
        let f = f.as_array().unwrap();
        (f.len() == 2 && f.iter().all(|x| x["pending"] == false)).then_some(())
    })
    .await
    .unwrap();
    for p in [&alice, &bob] {
        let f = p.cli_json(&["followers"]);
        assert_eq!(f[0]["peer_id"], keys[2].as_str(), "{f}");
    }
    // Both feeds reach carol.
    post(&a, "from alice").await;
    post(&b, "from bob").await;
    wait_for(WAIT, "carol to get both posts", || async {
        let tl = timeline(&c).await;
        (tl.iter().any(|(_, _, x)| x == "from alice") && tl.iter().any(|(_, _, x)| x == "from bob"))
            .then_some(())
    })
    .await
    .unwrap();
}

async fn post(d: &Daemon, body: &str) -> Value {
    let (s, v) = post_raw(d, "/posts", &json!({ "body": body })).await;
    assert_eq!(s, 201, "{v}");
    v
}

fn of(author: &str, tl: &[(String, u64, String)]) -> Vec<(u64, String)> {
    tl.iter()
        .filter(|(a, _, _)| a == author)
        .map(|(_, s, b)| (*s, b.clone()))
        .collect()
}

/// Issue tests 1-3: push to a follower; catch-up after being offline; following an
/// offline user, fed by another follower; the followee learns of the follower.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_push_catch_up_and_offline_follow() {
    let (alice, bob, carol) = (
        Profile::init("alice"),
        Profile::init("bob"),
        Profile::init("carol"),
    );
    let a = alice.up(&[]).await;
    let boot = addr(&a).await;
    let b = bob.up(&["--bootstrap", &boot]).await;
    wait_registered(&a).await;
    wait_registered(&b).await;
    let alice_id = a.author().to_string();

    // 1. bob follows alice (by handle); alice posts; bob's timeline has the post.
    let out = bob.cli(&["follow", "alice"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("Following @alice"),
        "{}",
        stdout(&out)
    );
    post(&a, "hello bob").await;
    wait_for(WAIT, "bob to receive alice's post", || async {
        of(&alice_id, &timeline(&b).await).contains(&(1, "hello bob".to_string()))
    })
    .await
    .unwrap();
    let tl = bob.cli_json(&["timeline"]);
    assert_eq!(tl["posts"][0]["handle"], "alice");
    // The statement reached alice: she lists bob, and bob's follow is acknowledged.
    wait_for(WAIT, "alice to list bob", || async {
        let f = alice.cli_json(&["followers"]);
        (f.as_array().unwrap().len() == 1 && f[0]["handle"] == "bob").then_some(())
    })
    .await
    .unwrap();
    wait_acknowledged(&bob, "bob's follow").await;

    // 2. bob is stopped; alice posts 50 times; bob restarts and catches up.
    assert!(b.stop().await.unwrap().success());
    for i in 1..=50 {
        post(&a, &format!("while bob was away {i}")).await;
    }
    let b = bob.up(&["--bootstrap", &boot]).await;
    wait_for(WAIT, "bob to catch up on 51 posts", || async {
        (of(&alice_id, &timeline(&b).await).len() >= 51).then_some(())
    })
    .await
    .unwrap();
    let bobs = of(&alice_id, &timeline(&b).await);
    let alices = of(&alice_id, &timeline(&a).await);
    assert_eq!(alices.len(), 51);
    assert_eq!(bobs, alices, "same posts, same order, no duplicates");

    // 3. alice is stopped; carol (new) follows her while she is offline, and gets
    //    her posts from bob; when alice returns she lists carol as a follower.
    //    A handle is believed when two peers name its key: dave holds alice's claim
    //    too (her register stores it again, now that dave is up).
    let bob_addr = addr(&b).await;
    let dave = Profile::init("dave");
    let _d = dave.up(&["--bootstrap", &bob_addr]).await;
    wait_for(WAIT, "dave to hold alice's claim", || async {
        let out = alice.cli(&["register"]);
        if !out.status.success() {
            // A claim still pending (no peer stored it yet): try again.
            eprintln!("register: {}", stderr(&out));
            return None;
        }
        dave.stored_claim_expiry("alice")
    })
    .await
    .unwrap();
    assert!(a.stop().await.unwrap().success());
    let c = carol.up(&["--bootstrap", &bob_addr]).await;
    wait_registered(&c).await;
    let out = carol.cli(&["follow", "@alice"]);
    assert!(out.status.success(), "{}", stderr(&out));
    wait_for(WAIT, "carol to get alice's posts from bob", || async {
        (of(&alice_id, &timeline(&c).await).len() == 51).then_some(())
    })
    .await
    .unwrap();
    assert_eq!(of(&alice_id, &timeline(&c).await), alices);
    let following = carol.cli_json(&["following"]);
    assert_eq!(following[0]["handle"], "alice");
    assert_eq!(
        following[0]["pending"], true,
        "alice has not acknowledged yet"
    );
    assert!(stdout(&carol.cli(&["following"])).contains("pending"));

    let a = alice.up(&["--bootstrap", &bob_addr]).await;
    wait_for(WAIT, "alice to list carol as a follower", || async {
        let f = alice.cli_json(&["followers"]);
        let handles: Vec<&str> = f
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|x| x["handle"].as_str())
            .collect();
        handles.contains(&"carol").then_some(())
    })
    .await
    .unwrap();
    wait_acknowledged(&carol, "carol's follow").await;
    // Alive and well: a new post reaches both followers.
    post(&a, "back again").await;
    for d in [&b, &c] {
        wait_for(WAIT, "the new post", || async {
            of(&alice_id, &timeline(d).await)
                .first()
                .is_some_and(|p| p.1 == "back again")
        })
        .await
        .unwrap();
    }
    let st = status(&b).await;
    assert_eq!(st["followers"], 0);
    assert_eq!(st["following"], 1);
    assert!(st["network"]["connected_peers"].as_u64().unwrap() >= 1);
    assert!(st["network"]["routing_table_size"].as_u64().unwrap() >= 1);
}

/// Issue test 4: a second user claiming a taken handle is refused clearly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_handle_is_refused() {
    let alice = Profile::init("alice");
    let bob = Profile::init("bob");
    let impostor = Profile::init("alice"); // same handle, another key
    let a = alice.up(&[]).await;
    let boot = addr(&a).await;
    // A claim needs another node to hold it: alice alone stays pending.
    assert_eq!(handle_state(&a).await["state"], "pending");
    let _b = bob.up(&["--bootstrap", &boot]).await;
    wait_registered(&a).await;
    let alice_id = a.author().to_string();

    let m = impostor.up(&["--bootstrap", &boot]).await;
    wait_for(
        WAIT,
        "the impostor to learn the handle is taken",
        || async {
            let s = handle_state(&m).await;
            (s["state"] == "taken").then_some(s)
        },
    )
    .await
    .unwrap();
    assert_eq!(handle_state(&m).await["by"], alice_id.as_str());
    let out = impostor.cli(&["register"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("handle @alice is already taken by another key") && err.contains(&alice_id),
        "{err}"
    );
    assert!(stdout(&impostor.cli(&["whoami"])).contains("taken by"));
    // Nobody resolving @alice gets the impostor.
    let out = impostor.cli(&["follow", "alice"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        impostor.cli_json(&["following"])[0]["peer_id"],
        alice_id.as_str()
    );
    // A free handle works, and becomes the profile's.
    let w = impostor.cli_json(&["register", "not_alice"]);
    assert_eq!(w["handle"], "not_alice");
    assert_eq!(w["handle_state"]["state"], "registered");
    // A bad handle is refused before any network traffic.
    let out = impostor.cli(&["register", "No Way"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("only lowercase a-z"),
        "{}",
        stderr(&out)
    );
}

/// Issue test 6: expired posts are not served by sync and leave followers'
/// timelines; the author keeps them in the archive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_posts_are_not_served_and_leave_timelines() {
    let (alice, bob) = (Profile::init("alice"), Profile::init("bob"));
    let a = alice.up(&["--post-ttl", "3s"]).await;
    let boot = addr(&a).await;
    let b = bob.up(&["--bootstrap", &boot, "--gc-interval", "1s"]).await;
    wait_registered(&a).await;
    wait_registered(&b).await;
    let alice_id = a.author().to_string();
    assert!(bob.cli(&["follow", "alice"]).status.success());
    wait_acknowledged(&bob, "bob's follow").await;
    post(&a, "short-lived").await;
    wait_for(WAIT, "bob to receive it", || async {
        (!of(&alice_id, &timeline(&b).await).is_empty()).then_some(())
    })
    .await
    .unwrap();
    wait_for(WAIT, "the post to leave bob's timeline", || async {
        of(&alice_id, &timeline(&b).await).is_empty().then_some(())
    })
    .await
    .unwrap();
    assert!(of(&alice_id, &timeline(&a).await).is_empty());

    // Neither bob nor alice serves it any more, to a client speaking the protocol.
    let probe = crate::mallory::Mallory::start(&boot).await;
    for addr in [addr(&b).await, boot.clone()] {
        let peer = addr.rsplit('/').next().unwrap().to_string();
        let posts = probe.sync(&addr, &peer, &alice_id, 0).await;
        assert!(
            posts.is_empty(),
            "{addr} served {} expired posts",
            posts.len()
        );
    }
    // bob's garbage collector deleted it; alice's archive keeps it.
    wait_for(WAIT, "bob's GC", || async {
        (status(&b).await["posts_stored"] == 0).then_some(())
    })
    .await
    .unwrap();
    let archive = alice.cli_json(&["archive"]);
    assert_eq!(archive["posts"][0]["body"], "short-lived");
    probe.stop().await;
}

/// A node started once with `--bootstrap` rejoins after a restart without it: it
/// remembers the peers it was connected to, and gets what it missed from them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_rejoins_through_remembered_peers() {
    let (alice, bob) = (Profile::init("alice"), Profile::init("bob"));
    let a = alice.up(&[]).await;
    let boot = addr(&a).await;
    let b = bob
        .up(&["--bootstrap", &boot, "--maintenance-interval", "1s"])
        .await;
    let alice_id = a.author().to_string();
    assert!(bob.cli(&["follow", &alice_id]).status.success());
    wait_acknowledged(&bob, "bob's follow").await;
    // A maintenance round has written alice down.
    wait_for(WAIT, "bob to remember alice", || async {
        let db = rusqlite::Connection::open(ProfileDir::new(&bob.dir).db_path()).ok()?;
        let n: i64 = db
            .query_row("SELECT count(*) FROM peers", [], |r| r.get(0))
            .ok()?;
        (n >= 1).then_some(())
    })
    .await
    .unwrap();
    assert!(b.stop().await.unwrap().success());

    post(&a, "while bob was away").await;
    let b = bob.up(&[]).await;
    wait_for(WAIT, "bob to get the post he missed", || async {
        of(&alice_id, &timeline(&b).await)
            .iter()
            .any(|p| p.1 == "while bob was away")
            .then_some(())
    })
    .await
    .unwrap();
    assert!(
        status(&b).await["network"]["connected_peers"]
            .as_u64()
            .unwrap()
            >= 1
    );
}

/// A peer that stops answering (a NAT that dropped its mapping, a machine gone
/// without a word: here, a process stopped with SIGSTOP, whose kernel still holds
/// its TCP connections) is noticed: bob's ping on the connection goes unanswered,
/// he closes it and counts it. Once alice answers again, bob reaches her anew and
/// her next post arrives.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_stops_answering_is_disconnected_then_reached_again() {
    let (alice, bob) = (Profile::init("alice"), Profile::init("bob"));
    let a = alice.up(&["--keepalive", "2s"]).await;
    let boot = addr(&a).await;
    let b = bob
        .up(&[
            "--bootstrap",
            &boot,
            "--keepalive",
            "2s",
            "--maintenance-interval",
            "1s",
        ])
        .await;
    let alice_id = a.author().to_string();
    assert!(bob.cli(&["follow", &alice_id]).status.success());
    wait_acknowledged(&bob, "bob's follow").await;
    let connected = |st: &Value| st["network"]["connected_peers"].as_u64().unwrap();
    assert_eq!(connected(&status(&b).await), 1);
    assert_eq!(
        net_counter(&status(&b).await, "connections_closed_unanswered"),
        0
    );

    let frozen = Frozen::stop(a.pid());
    wait_for(
        WAIT,
        "bob to close his connection to silent alice",
        || async {
            let st = status(&b).await;
            (connected(&st) == 0 && net_counter(&st, "connections_closed_unanswered") >= 1)
                .then_some(())
        },
    )
    .await
    .unwrap();
    drop(frozen);

    post(&a, "after the silence").await;
    wait_for(WAIT, "bob to get alice's post", || async {
        of(&alice_id, &timeline(&b).await)
            .iter()
            .any(|p| p.1 == "after the silence")
            .then_some(())
    })
    .await
    .unwrap();
    assert_eq!(connected(&status(&b).await), 1);
}

/// A process stopped with SIGSTOP until this is dropped (SIGCONT), so a failing
/// test leaves nothing frozen.
struct Frozen(u32);

impl Frozen {
    fn stop(pid: u32) -> Self {
        let ok = std::process::Command::new("kill")
            .args(["-STOP", &pid.to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -STOP {pid}");
        Frozen(pid)
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-CONT", &self.0.to_string()])
            .status();
    }
}
