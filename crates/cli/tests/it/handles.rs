//! Attacks on handles against real daemons: a backdated claim served by the
//! attacker's own node, one key squatting many handles, and a handle whose owner has
//! been offline for a month (nodes living 31 days ahead through libfaketime).

use std::time::Duration;

use serde_json::Value;
use starling_core::records::name_key;
use starling_core::{Handle, Identity, NameClaim, NameClaimContent};

use crate::harness::{
    Profile, addr, handle_state, net_counter, status, stderr, wait_for, wait_registered,
};
use crate::mallory::Mallory;

const WAIT: Duration = Duration::from_secs(120);

/// Claims `handle` again from `owner` until every one of `holders` has stored the
/// claim (on disk) to expire more than `min_ms` from now.
async fn wait_stored(owner: &Profile, handle: &str, holders: &[&Profile], min_ms: u64) {
    wait_for(
        WAIT,
        &format!("the claim for @{handle} to be stored"),
        || async {
            let out = owner.cli(&["register"]);
            if !out.status.success() {
                // A claim still pending (no peer stored it yet): try again.
                eprintln!("register: {}", stderr(&out));
                return None;
            }
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as u64;
            holders
                .iter()
                .all(|p| {
                    p.stored_claim_expiry(handle)
                        .is_some_and(|e| e > now + min_ms)
                })
                .then_some(())
        },
    )
    .await
    .unwrap();
}

/// A claim for `handle` signed by `id`, claimed at `at` (Unix ms).
fn claim(id: &Identity, handle: &str, at: u64) -> (Vec<u8>, Vec<u8>) {
    let handle = Handle::parse(handle).unwrap();
    let c = NameClaim::sign(
        NameClaimContent {
            handle: handle.clone(),
            owner: id.author(),
            claimed_at: at,
        },
        id,
    )
    .unwrap();
    (name_key(&handle), c.into_bytes())
}

/// The key a `follow <handle>` resolved to, or the error it printed.
fn follow(p: &Profile, handle: &str) -> Result<String, String> {
    let out = p.cli(&["--json", "follow", handle]);
    if !out.status.success() {
        return Err(stderr(&out));
    }
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    Ok(v["peer_id"].as_str().unwrap().to_string())
}

/// Mallory claims @alice, backdated to 1970, and serves it from her own node. The
/// honest nodes keep alice's claim; alice stays registered when she claims again; a
/// newcomer who joins through Mallory herself resolves @alice to alice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backdated_claim_served_by_its_own_node_neither_takes_nor_gets_pinned() {
    let (alice, bob, carol) = (
        Profile::init("alice"),
        Profile::init("bob"),
        Profile::init("carol"),
    );
    let a = alice.up(&[]).await;
    let boot = addr(&a).await;
    let b = bob.up(&["--bootstrap", &boot]).await;
    let c = carol.up(&["--bootstrap", &boot]).await;
    wait_registered(&a).await;
    let alice_id = a.author().to_string();
    wait_stored(&alice, "alice", &[&bob, &carol], 0).await;

    let m = Mallory::start(&boot).await;
    let (key, backdated) = claim(&m.id, "alice", 1);
    // Stored in Mallory's own record store (she answers with it), refused by the
    // honest nodes, which hold alice's claim: a claim's date decides nothing.
    wait_for(WAIT, "the honest nodes to refuse the rival claim", || {
        let (net, key, value, b, c) = (m.net.clone(), key.clone(), backdated.clone(), &b, &c);
        async move {
            let _ = net.put_record(key, value).await;
            let (sb, sc) = (status(b).await, status(c).await);
            (net_counter(&sb, "records_refused") > 0 && net_counter(&sc, "records_refused") > 0)
                .then_some(())
        }
    })
    .await
    .unwrap();

    // alice claims again (as at every start and renewal): still hers.
    let out = alice.cli(&["--json", "register"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(handle_state(&a).await["state"], "registered");

    // dave joins through Mallory and follows @alice: alice's key, not Mallory's.
    let dave = Profile::init("dave");
    let mallory_addr = crate::mallory::mallory_addr(&m).await;
    let _d = dave.up(&["--bootstrap", &mallory_addr]).await;
    let got = wait_for(WAIT, "dave to resolve @alice", || async {
        follow(&dave, "alice").ok()
    })
    .await
    .unwrap();
    assert_eq!(got, alice_id, "@alice resolved to Mallory's key");
    assert_ne!(got, m.author().to_string());
    m.stop().await;
}

/// One key signs claims for 200 handles and stores them at every node: each node
/// keeps only the newest, so one key cannot fill a record store, and the handles it
/// dropped resolve to nobody.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_key_holds_one_handle_and_cannot_fill_a_record_store() {
    let (alice, bob) = (Profile::init("alice"), Profile::init("bob"));
    let a = alice.up(&[]).await;
    let boot = addr(&a).await;
    let b = bob.up(&["--bootstrap", &boot]).await;
    wait_registered(&a).await;
    wait_registered(&b).await;
    // Each registered node publishes its profile right after its claim: bob holds
    // both claims and both profiles (four records) before the squatting starts.
    let held_before = wait_for(WAIT, "bob to hold both claims and profiles", || async {
        let held = net_counter(&status(&b).await, "dht_records_held");
        (held >= 4).then_some(held)
    })
    .await
    .unwrap();

    let m = Mallory::start(&boot).await;
    for i in 0..200u64 {
        let (key, value) = claim(&m.id, &format!("squat{i}"), 1_000 + i);
        m.net.put_record(key, value).await.unwrap();
    }
    wait_for(WAIT, "bob to drop the replaced claims", || async {
        (net_counter(&status(&b).await, "claims_replaced") >= 199).then_some(())
    })
    .await
    .unwrap();
    let st = status(&b).await;
    // Mallory's claim, and at most her profile record.
    assert!(
        net_counter(&st, "dht_records_held") <= held_before + 2,
        "{}",
        st["network"]["counters"]
    );
    // The last claim is Mallory's handle; the others are free again.
    let squat = format!("squat{}", 199);
    assert_eq!(follow(&bob, &squat).unwrap(), m.author().to_string());
    let err = follow(&bob, "squat0").unwrap_err();
    assert!(err.contains("no user @squat0 was found"), "{err}");
    m.stop().await;
}

/// alice registers and goes offline for a month: 31 days later (bob and carol
/// restarted with their clocks 31 days ahead) a newcomer still resolves @alice to
/// her key from what they stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handle_survives_its_owner_offline_for_a_month() {
    let (alice, bob, carol) = (
        Profile::init("alice"),
        Profile::init("bob"),
        Profile::init("carol"),
    );
    let a = alice.up(&[]).await;
    let boot = addr(&a).await;
    let b = bob.up(&["--bootstrap", &boot]).await;
    let c = carol.up(&["--bootstrap", &boot]).await;
    wait_registered(&a).await;
    let alice_id = a.author().to_string();
    // Both keep alice's claim (on disk) for more than 30 days.
    wait_stored(&alice, "alice", &[&bob, &carol], 30 * 24 * 3600 * 1000).await;
    for d in [a, b, c] {
        assert!(d.stop().await.unwrap().success());
    }

    // 31 days later, alice still offline.
    let b = bob.up_at("+31d", &[]).await;
    let c = carol.up_at("+31d", &["--bootstrap", &addr(&b).await]).await;
    let dave = Profile::init("dave");
    let _d = dave.up_at("+31d", &["--bootstrap", &addr(&c).await]).await;
    let got = wait_for(WAIT, "dave to resolve @alice", || async {
        follow(&dave, "alice").ok()
    })
    .await
    .unwrap();
    assert_eq!(got, alice_id);
    drop((b, c));
}
