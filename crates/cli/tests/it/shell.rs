//! `starling shell` through a pseudo-terminal: every menu option, invalid choices,
//! and logout.

use std::time::Duration;

use rexpect::session::PtySession;

use crate::harness::{BIN, Profile, addr, status, wait_for};

fn shell(p: &Profile) -> PtySession {
    let mut cmd = std::process::Command::new(BIN);
    cmd.arg("--data-dir").arg(&p.dir).arg("shell");
    rexpect::session::spawn_command(cmd, Some(20_000)).expect("spawn the shell")
}

fn choose(s: &mut PtySession, n: &str) {
    s.exp_string("Choose 1-8: ").unwrap();
    s.send_line(n).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shell_menu_end_to_end() {
    let (alice, bob) = (Profile::init("alice"), Profile::init("bob"));
    // Long enough for the menu's round trips on a loaded machine.
    let a = alice.up(&["--post-ttl", "10s"]).await;
    let boot = addr(&a).await;
    let b = bob.up(&["--bootstrap", &boot]).await;
    for d in [&a, &b] {
        wait_for(Duration::from_secs(60), "handles", || async {
            (d.get("/whoami").await.unwrap()["handle_state"]["state"] == "registered").then_some(())
        })
        .await
        .unwrap();
    }
    let bob_id = b.author().to_string();

    let mut s = shell(&alice);
    s.exp_string("logged in as @alice").unwrap();

    // Invalid choices.
    choose(&mut s, "9");
    s.exp_string("not on the menu: choose a number from 1 to 8")
        .unwrap();
    choose(&mut s, "post");
    s.exp_string("not on the menu").unwrap();

    // [1] Create post, with the CLI's validation and messages.
    choose(&mut s, "1");
    s.exp_string("Your post (1-280 characters): ").unwrap();
    s.send_line("hello from the shell").unwrap();
    s.exp_string("Posted #1").unwrap();
    choose(&mut s, "1");
    s.exp_string("Your post").unwrap();
    s.send_line(&"x".repeat(281)).unwrap();
    s.exp_string("at most 280 characters; this one has 281")
        .unwrap();
    choose(&mut s, "1");
    s.exp_string("Your post").unwrap();
    s.send_line("   ").unwrap();
    s.exp_string("a post cannot be empty").unwrap();

    // [2] Show timeline.
    choose(&mut s, "2");
    s.exp_string("hello from the shell").unwrap();

    // [5] Follow a user (by handle), [4] Show following.
    choose(&mut s, "5");
    s.exp_string("Follow whom?").unwrap();
    s.send_line("bob").unwrap();
    s.exp_string("Following @bob").unwrap();
    choose(&mut s, "5");
    s.exp_string("Follow whom?").unwrap();
    s.send_line("nobody_by_that_name").unwrap();
    s.exp_string("no user @nobody_by_that_name was found")
        .unwrap();
    choose(&mut s, "4");
    s.exp_string("@bob").unwrap();
    s.exp_string(&bob_id).unwrap();

    // [3] Show followers: bob follows alice back.
    assert!(bob.cli(&["follow", "alice"]).status.success());
    wait_for(
        Duration::from_secs(60),
        "bob's follow to reach alice",
        || async { (status(&a).await["followers"] == 1).then_some(()) },
    )
    .await
    .unwrap();
    choose(&mut s, "3");
    s.exp_string("@bob").unwrap();

    // [6] Unfollow a user (by number from the list).
    choose(&mut s, "6");
    s.exp_string("(1) @bob").unwrap();
    s.exp_string("Unfollow whom?").unwrap();
    s.send_line("1").unwrap();
    s.exp_string("No longer following @bob").unwrap();
    choose(&mut s, "4");
    s.exp_string("You follow nobody yet.").unwrap();

    // [7] Repost from storage: post #1 expired after 10 s.
    wait_for(Duration::from_secs(60), "post #1 to expire", || async {
        let archive = a.get("/archive").await.unwrap();
        (!archive["posts"].as_array().unwrap().is_empty()).then_some(())
    })
    .await
    .unwrap();
    choose(&mut s, "7");
    s.exp_string("hello from the shell").unwrap();
    s.exp_string("Repost which post?").unwrap();
    s.send_line("abc").unwrap();
    s.exp_string("is not a post number").unwrap();
    choose(&mut s, "7");
    s.exp_string("Repost which post?").unwrap();
    s.send_line("1").unwrap();
    s.exp_string("Reposted #1 as #2").unwrap();

    // [8] Logout.
    choose(&mut s, "8");
    s.exp_string("Logged out of @alice").unwrap();
    s.exp_eof().unwrap();
    let tl = a.get("/timeline").await.unwrap();
    assert_eq!(tl["posts"][0]["repost_of"]["seq"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shell_without_a_daemon_says_so() {
    let alice = Profile::init("alice");
    let out = alice.cli(&["shell"]);
    assert!(!out.status.success());
    assert!(crate::harness::stderr(&out).contains("no daemon running"));
}
