//! The clock against SNTP servers on loopback: a fake responder with a known skew,
//! a silent one, none at all, liars and slow ones. Against a real NTP server
//! (chrony): `crates/cli/tests/it/clock.rs`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use starling_node::clock::Clock;
use starling_node::sntp::{self, SntpError};
use tokio::net::UdpSocket;
use tokio::sync::Notify;

/// A fake SNTP server whose clock runs `skew_ms` ahead of ours. When `gate` is set,
/// it answers only after the gate is opened.
async fn fake_server(skew_ms: i64, gate: Option<Arc<Notify>>) -> SocketAddr {
    fake_server_claiming(skew_ms, gate, 0).await
}

/// [`fake_server`] whose answers claim it held each request `processing_ms`.
async fn fake_server_claiming(
    skew_ms: i64,
    gate: Option<Arc<Notify>>,
    processing_ms: u64,
) -> SocketAddr {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 64];
        // Bounded: a test never needs more than a few answers.
        for _ in 0..16 {
            let Ok((n, from)) = sock.recv_from(&mut buf).await else {
                return;
            };
            if n < 48 {
                continue;
            }
            if let Some(g) = &gate {
                g.notified().await;
            }
            let skewed = |t: SystemTime| {
                if skew_ms >= 0 {
                    t + Duration::from_millis(skew_ms as u64)
                } else {
                    t - Duration::from_millis((-skew_ms) as u64)
                }
            };
            let mut reply = [0u8; 48];
            reply[0] = 0x24; // version 4, mode 4 (server)
            reply[1] = 2; // stratum
            reply[24..32].copy_from_slice(&buf[40..48]); // origin = client's transmit
            let t2 = sntp::to_ntp(skewed(SystemTime::now()));
            reply[32..40].copy_from_slice(&t2.to_be_bytes());
            let t3 = sntp::to_ntp(skewed(SystemTime::now()) + Duration::from_millis(processing_ms));
            reply[40..48].copy_from_slice(&t3.to_be_bytes());
            let _ = sock.send_to(&reply, from).await;
        }
    });
    addr
}

/// How far one SNTP sample may be off: 5 ms, or half the round trip it measured
/// plus 1 ms when that is more (the error of one sample is at most half the
/// difference between the two directions' delays: a loaded machine adds them).
fn tolerance(clock: &Clock) -> f64 {
    5.0f64.max(clock.ntp_status().delay_ms.unwrap_or(0.0) / 2.0 + 1.0)
}

#[tokio::test]
async fn estimates_a_known_skew_within_a_few_ms() {
    for skew in [3_500i64, -42_000, 0] {
        let addr = fake_server(skew, None).await;
        let clock = Clock::new();
        assert!(
            clock
                .sync_once(&[addr.to_string()], Duration::from_secs(2))
                .await
        );
        let err = (clock.offset_ms() - skew as f64).abs();
        let bound = tolerance(&clock);
        assert!(
            err < bound,
            "skew {skew}: estimated {} ms",
            clock.offset_ms()
        );
        // The corrected clock follows the server's.
        let corrected = clock.now_ms() as i64;
        let expected = starling_node::clock::system_ms() as i64 + skew;
        assert!(((corrected - expected).abs() as f64) < bound + 5.0);
        let st = clock.ntp_status();
        assert_eq!(st.server.as_deref(), Some(addr.to_string().as_str()));
        assert!(st.last_error.is_none());
    }
}

#[tokio::test]
async fn picks_the_answer_with_the_smallest_delay_and_ignores_dead_servers() {
    let good = fake_server(1_000, None).await;
    // A bound socket that never answers, and a port nobody listens on.
    let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let dead = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap()
    };
    let clock = Clock::new();
    let servers = vec![
        silent.local_addr().unwrap().to_string(),
        dead.to_string(),
        good.to_string(),
    ];
    assert!(clock.sync_once(&servers, Duration::from_millis(500)).await);
    assert!((clock.offset_ms() - 1_000.0).abs() < tolerance(&clock));
}

/// Issue 14: the client does not jump the clock on implausible answers. One server
/// of three that is a minute off is outvoted; two that disagree leave the offset as
/// it was; an answer claiming it took 5 s to answer is refused.
#[tokio::test]
async fn implausible_answers_do_not_move_the_clock() {
    let (a, b) = (
        fake_server(1_000, None).await,
        fake_server(1_010, None).await,
    );
    let liar = fake_server(60_000, None).await;
    let clock = Clock::new();
    let three = [a, liar, b].map(|s| s.to_string());
    assert!(clock.sync_once(&three, Duration::from_secs(2)).await);
    assert!(
        (clock.offset_ms() - 1_005.0).abs() < 10.0,
        "the agreeing pair decides: {} ms",
        clock.offset_ms()
    );

    let clock = Clock::new();
    clock.set_offset_ms(7.0);
    let pair = [fake_server(0, None).await, fake_server(60_000, None).await].map(|s| s.to_string());
    assert!(!clock.sync_once(&pair, Duration::from_secs(2)).await);
    assert_eq!(clock.offset_ms(), 7.0, "no majority: the offset stays");
    let err = clock.ntp_status().last_error.unwrap();
    assert!(err.contains("disagree"), "{err}");

    let slow = fake_server_claiming(30_000, None, 5_000).await;
    assert!(matches!(
        sntp::query(&slow.to_string(), Duration::from_secs(2)).await,
        Err(SntpError::SlowServer(ms)) if ms >= 4_900.0
    ));
    let clock = Clock::new();
    assert!(
        !clock
            .sync_once(&[slow.to_string()], Duration::from_secs(2))
            .await
    );
    assert_eq!(clock.offset_ms(), 0.0);
}

/// `synced_at` is in corrected time, like every time the node reports.
#[tokio::test]
async fn synced_at_is_in_corrected_time() {
    let addr = fake_server(-120_000, None).await;
    let clock = Clock::new();
    assert!(
        clock
            .sync_once(&[addr.to_string()], Duration::from_secs(2))
            .await
    );
    let synced = clock.ntp_status().synced_at.unwrap() as i64;
    let system = starling_node::clock::system_ms() as i64;
    assert!(
        (synced - (system - 120_000)).abs() < 1_000,
        "synced_at {synced} vs system {system}"
    );
}

/// Issue 14: a clock that ran ahead and was corrected. The HLC remembers the future
/// (the newest own post, from before the correction), but a new post is stamped
/// with the corrected time; follow statements and profiles keep the HLC, which
/// never goes back.
#[tokio::test]
async fn posts_after_a_correction_carry_the_corrected_time() {
    let clock = Clock::new();
    let now = starling_node::clock::system_ms();
    let future = starling_core::Timestamp::from_parts(now + 600_000, 0);
    clock.start_after(future);
    let post = clock.post_stamp();
    assert!(
        post.millis() <= starling_node::clock::system_ms() + 1_000,
        "a post is stamped now, not 10 minutes ahead"
    );
    assert!(post.millis() + 1_000 >= now);
    let statement = clock.stamp();
    assert!(statement > future, "statements never go back");
    // Within the bound, posts keep the HLC's order.
    let clock = Clock::new();
    let (a, b) = (clock.post_stamp(), clock.post_stamp());
    assert!(b > a);
}

#[tokio::test]
async fn keeps_the_last_offset_and_keeps_stamping_when_no_server_answers() {
    let clock = Clock::new();
    clock.set_offset_ms(250.0);
    let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let before = clock.stamp();
    let ok = clock
        .sync_once(
            &[silent.local_addr().unwrap().to_string()],
            Duration::from_millis(200),
        )
        .await;
    assert!(!ok);
    assert_eq!(clock.offset_ms(), 250.0);
    assert!(clock.stamp() > before);
    assert!(clock.ntp_status().last_error.unwrap().contains("no answer"));
    // A server string without a port resolves to nothing (no lookup leaves the host).
    assert!(matches!(
        sntp::query("127.0.0.1", Duration::from_millis(500)).await,
        Err(SntpError::Resolve(_))
    ));
}

#[tokio::test]
async fn a_slow_server_never_blocks_stamping() {
    let gate = Arc::new(Notify::new());
    let addr = fake_server(2_000, Some(gate.clone())).await;
    let clock = Arc::new(Clock::new());
    let syncing = {
        let clock = clock.clone();
        tokio::spawn(async move {
            clock
                .sync_once(&[addr.to_string()], Duration::from_secs(10))
                .await
        })
    };
    // While the server holds its answer, the clock keeps issuing timestamps.
    let mut last = clock.stamp();
    for _ in 0..1000 {
        let t = clock.stamp();
        assert!(t > last);
        last = t;
    }
    assert!(!syncing.is_finished());
    gate.notify_one();
    assert!(syncing.await.unwrap());
    assert!((clock.offset_ms() - 2_000.0).abs() < tolerance(&clock));
    // The jump forward shows in new stamps; none goes backwards.
    assert!(clock.stamp() > last);
}
