//! Several profiles on one machine with plain `starling up`: the second takes free
//! ports near the defaults when those are taken, says so, and its commands find it; restarted,
//! it takes the same ports again (its web UI link stays the same).

use crate::harness::{Profile, status};

fn log(p: &Profile) -> String {
    std::fs::read_to_string(p.dir.join("daemon.log")).unwrap_or_default()
}

fn listen_port(st: &serde_json::Value) -> String {
    let addr = st["network"]["listen_addrs"][0].as_str().unwrap();
    addr.split('/').nth(4).unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_profile_starts_with_plain_up() {
    let (alice, bob) = (Profile::init("alice"), Profile::init("bob"));
    let a = alice.up_plain().await;
    let b = bob.up_plain().await;
    assert_ne!(a.url(), b.url());
    let (sa, sb) = (status(&a).await, status(&b).await);
    assert_ne!(listen_port(&sa), listen_port(&sb), "{sa}\n{sb}");
    // The second said why it is elsewhere (the first too, if another program holds
    // the defaults).
    let said = log(&bob);
    assert!(said.contains("port 7420 is taken"), "{said}");
    assert!(said.contains("peer-to-peer port 7421 is taken"), "{said}");
    // Near the defaults, below the ports the system hands out for outgoing
    // connections (so none takes them while the daemon is down).
    let api_port: u16 = b.url().rsplit(':').next().unwrap().parse().unwrap();
    let p2p_port: u16 = listen_port(&sb).parse().unwrap();
    assert!(
        (7422..=7484).contains(&api_port) && api_port.is_multiple_of(2),
        "{api_port}"
    );
    assert!(
        (7423..=7485).contains(&p2p_port) && !p2p_port.is_multiple_of(2),
        "{p2p_port}"
    );
    // Each profile's commands find their own daemon, with no flag.
    assert_eq!(alice.cli_json(&["whoami"])["handle"], "alice");
    assert_eq!(bob.cli_json(&["whoami"])["handle"], "bob");
    assert_eq!(
        bob.cli_json(&["status"])["network"]["listen_addrs"],
        sb["network"]["listen_addrs"]
    );

    // Restarted while the first still runs: the same ports as before.
    let (url, port) = (b.url().to_string(), listen_port(&sb));
    b.stop().await.unwrap();
    let b = bob.up_plain().await;
    assert_eq!(b.url(), url);
    assert_eq!(listen_port(&status(&b).await), port);
    assert_eq!(bob.cli_json(&["whoami"])["handle"], "bob");
    // A port given explicitly is never swapped: taken, the daemon refuses to start.
    let carol = Profile::init("carol");
    let taken = url.trim_start_matches("http://").to_string();
    let err = carol
        .try_up(&["--api-addr", &taken])
        .await
        .err()
        .expect("the port is taken");
    assert!(err.to_string().contains("cannot listen on"), "{err}");
}
