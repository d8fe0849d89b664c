//! Clocks against a real NTP server (chrony on loopback), and a user whose clock
//! runs ten minutes ahead (libfaketime): followers refuse its posts, without a
//! strike, and tell it (status, CLI, and a banner in the web UI, screenshot
//! `target/screenshots/clock-warning.png`); corrected by SNTP, its very next post
//! is accepted.

use std::time::Duration;

use serde_json::Value;
use starling_cli::kit::Chrony;
use starling_node::clock::{Clock, system_ms};
use starling_node::sntp;

use crate::harness::{Profile, addr, status, stdout, timeline, wait_for};

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn synchronises_against_a_real_ntp_server_on_loopback() {
    let chrony = Chrony::start().unwrap();
    let server = chrony.server();
    let clock = Clock::new();
    // chronyd needs a moment to bind.
    wait_for(WAIT, "chronyd to answer", || {
        clock.sync_once(std::slice::from_ref(&server), Duration::from_millis(500))
    })
    .await
    .unwrap_or_else(|e| panic!("{e}: {:?}", clock.ntp_status().last_error));
    // Same machine, same clock: the offset is (nearly) zero.
    // One sample is off by at most half its round trip (a loaded machine adds to it).
    let bound = 5.0f64.max(clock.ntp_status().delay_ms.unwrap_or(0.0) / 2.0 + 1.0);
    assert!(
        clock.offset_ms().abs() < bound,
        "offset {} (bound {bound})",
        clock.offset_ms()
    );
    let sample = sntp::query(&server, Duration::from_secs(1)).await.unwrap();
    assert_eq!(sample.stratum, 8, "chrony serves its `local stratum 8`");
}

fn counter(st: &Value, name: &str) -> u64 {
    st["counters"][name].as_u64().unwrap_or(0)
}

/// Issue 14, bad clocks. alice's machine runs 10 minutes ahead. bob refuses her
/// post as future-dated (counted as ignored, no strike, she stays connected) and
/// tells her; her status, `starling status` and the web UI's data say followers
/// refuse her posts. Restarted with an SNTP server (chrony on loopback, the true
/// time), her node corrects itself: the warning goes, and her very next post is
/// stamped with the true time and accepted, though her newest post so far is dated
/// 10 minutes ahead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clock_ten_minutes_ahead_is_told_and_corrected() {
    let chrony = Chrony::start().unwrap();
    let (alice, bob) = (Profile::init("alice"), Profile::init("bob"));
    let b = bob.up(&[]).await;
    let boot = addr(&b).await;
    let a = alice.up_at("+10m", &["--bootstrap", &boot]).await;
    let alice_key = a.author().to_string();

    let out = bob.cli(&["follow", &alice_key]);
    assert!(out.status.success(), "{}", crate::harness::stderr(&out));
    crate::harness::wait_acknowledged(&bob, "bob's follow of alice").await;

    alice.cli_json(&["post", "posted from ten minutes ahead"]);
    let st = wait_for(WAIT, "bob to refuse the future-dated post", || async {
        let st = status(&b).await;
        (counter(&st, "ignored.from_future") >= 1).then_some(st)
    })
    .await
    .unwrap();
    assert!(
        st["rejected"].get("from_future").is_none(),
        "a clock ahead is no attack: no strike: {st}"
    );
    let warning = wait_for(WAIT, "alice to be told", || async {
        let st = status(&a).await;
        let f = st["clock"]["future_refusals"].clone();
        (!f.is_null()).then_some(f)
    })
    .await
    .unwrap();
    assert_eq!(warning["peers"], 1, "{warning}");
    let ahead = warning["ahead_ms"].as_u64().unwrap();
    assert!(
        (590_000..=610_000).contains(&ahead),
        "her post was 10 minutes ahead of bob's clock: {ahead} ms"
    );
    // Bob counts his notice once alice's answer is back: after she shows it.
    wait_for(WAIT, "bob to count his notice", || async {
        (counter(&status(&b).await, "clock_notices.sent") >= 1).then_some(())
    })
    .await
    .unwrap();
    let text = stdout(&alice.cli(&["status"]));
    assert!(
        text.contains("WARNING") && text.contains("in the future"),
        "{text}"
    );
    // The web UI says so on every page.
    let cd = crate::browser::chromedriver().await;
    let web = crate::browser::browser(&cd, "alice-clock").await;
    web.goto(&format!("{}/login?token={}", a.url(), a.token()))
        .await
        .unwrap();
    crate::browser::wait_text(&web, "#clock-warning", "your posts as dated").await;
    crate::browser::shot(&web, "clock-warning.png").await;
    web.close().await.unwrap();
    assert!(
        status(&b).await["network"]["peers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p == alice_key.as_str()),
        "alice is not banned"
    );

    // Corrected: the same profile, the same fast machine, now with SNTP.
    a.stop().await.unwrap();
    let a = alice
        .up_at(
            "+10m",
            &["--bootstrap", &boot, "--ntp-server", &chrony.server()],
        )
        .await;
    let st = wait_for(WAIT, "alice's node to synchronise", || async {
        let st = status(&a).await;
        (!st["clock"]["ntp"]["synced_at"].is_null()).then_some(st)
    })
    .await
    .unwrap();
    let offset = st["clock"]["offset_ms"].as_f64().unwrap();
    assert!(
        (offset + 600_000.0).abs() < 2_000.0,
        "the correction is ten minutes back: {offset} ms"
    );
    assert!(st["clock"]["future_refusals"].is_null(), "{st}");
    let synced = st["clock"]["ntp"]["synced_at"].as_u64().unwrap();
    assert!(
        synced.abs_diff(system_ms()) < 5_000,
        "synced_at is in corrected (true) time"
    );

    let post = alice.cli_json(&["post", "posted on time"]);
    let ts = post["ts_ms"].as_u64().unwrap();
    assert!(
        ts.abs_diff(system_ms()) < 5_000,
        "stamped with the corrected time, not after her future post: {post}"
    );
    wait_for(WAIT, "bob to accept the corrected post", || async {
        timeline(&b)
            .await
            .iter()
            .any(|(_, _, body)| body == "posted on time")
    })
    .await
    .unwrap();
    assert!(
        !timeline(&b)
            .await
            .iter()
            .any(|(_, _, body)| body == "posted from ten minutes ahead"),
        "the future-dated post stays refused until its time comes"
    );
    a.stop().await.unwrap();
    b.stop().await.unwrap();
    drop(chrony);
}
