//! A minimal SNTP client (RFC 4330): one 48-byte UDP request per server, answered
//! within a short timeout. Written here rather than taken from a crate because it is
//! one packet layout, and we need its exact checks (origin echo against spoofing,
//! kiss-of-death, mode) and its timeout behaviour under our control.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use thiserror::Error;
use tokio::net::UdpSocket;

/// Seconds from the NTP epoch (1900) to the Unix epoch (1970).
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

#[derive(Debug, Error)]
pub enum SntpError {
    #[error("cannot resolve {0}")]
    Resolve(String),
    #[error("network error: {0}")]
    Io(#[from] std::io::Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("invalid answer: {0}")]
    BadAnswer(&'static str),
    /// A datagram that does not answer our request (stray, late or forged).
    #[error("invalid answer: origin timestamp does not match our request")]
    NotOurs,
    /// The server says it held our request this long before answering: its
    /// timestamps cannot both be right to within what we need.
    #[error("implausible answer: the server claims {0:.0} ms between receiving and answering")]
    SlowServer(f64),
    /// No majority of the answering servers agree on the time.
    #[error(
        "servers disagree: their offsets span {spread_ms:.0} ms and no majority agrees within {AGREE_MS} ms"
    )]
    Disagree { spread_ms: f64 },
}

/// Longest time a server may claim to have held a request (receive to transmit).
pub const MAX_PROCESSING_MS: f64 = 1_000.0;
/// Offsets within this of the median count as agreeing with it.
pub const AGREE_MS: f64 = 500.0;

/// One measurement against one server.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Server clock minus ours, in milliseconds.
    pub offset_ms: f64,
    /// Round-trip delay, minus the server's processing time, in milliseconds.
    pub delay_ms: f64,
    pub stratum: u8,
}

/// An NTP timestamp (seconds since 1900, 32.32 fixed point) from Unix time.
pub fn to_ntp(t: SystemTime) -> u64 {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs() + NTP_UNIX_OFFSET;
    let frac = ((d.subsec_nanos() as u64) << 32) / 1_000_000_000;
    (secs << 32) | frac
}

/// Unix milliseconds (fractional) from an NTP timestamp.
pub fn ntp_to_unix_ms(ntp: u64) -> f64 {
    let secs = (ntp >> 32) as f64 - NTP_UNIX_OFFSET as f64;
    let frac = (ntp & 0xffff_ffff) as f64 / 4_294_967_296.0;
    (secs + frac) * 1000.0
}

/// Queries one server (`host:port`) once.
pub async fn query(server: &str, timeout: Duration) -> Result<Sample, SntpError> {
    let addr: SocketAddr = tokio::time::timeout(timeout, tokio::net::lookup_host(server))
        .await
        .map_err(|_| SntpError::Timeout(timeout))?
        .map_err(|_| SntpError::Resolve(server.to_string()))?
        .next()
        .ok_or_else(|| SntpError::Resolve(server.to_string()))?;
    let bind: SocketAddr = if addr.is_ipv4() {
        "0.0.0.0:0".parse().expect("literal")
    } else {
        "[::]:0".parse().expect("literal")
    };
    let sock = UdpSocket::bind(bind).await?;
    sock.connect(addr).await?;

    let mut req = [0u8; 48];
    req[0] = 0x23; // LI 0, version 4, mode 3 (client)
    let t1 = SystemTime::now();
    let t1_ntp = to_ntp(t1);
    req[40..48].copy_from_slice(&t1_ntp.to_be_bytes());
    sock.send(&req).await?;

    let mut buf = [0u8; 128];
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let n = tokio::time::timeout_at(deadline, sock.recv(&mut buf))
            .await
            .map_err(|_| SntpError::Timeout(timeout))??;
        let t4 = SystemTime::now();
        match parse_reply(&buf[..n], t1_ntp, t1, t4) {
            // A stray or forged datagram: keep waiting for the real answer.
            Err(SntpError::NotOurs) => continue,
            other => return other,
        }
    }
}

fn parse_reply(p: &[u8], t1_ntp: u64, t1: SystemTime, t4: SystemTime) -> Result<Sample, SntpError> {
    if p.len() < 48 {
        return Err(SntpError::BadAnswer("shorter than 48 bytes"));
    }
    let mode = p[0] & 0x07;
    if mode != 4 && mode != 5 {
        return Err(SntpError::BadAnswer("not a server reply"));
    }
    let stratum = p[1];
    if stratum == 0 || stratum > 15 {
        return Err(SntpError::BadAnswer(
            "server is unsynchronised (kiss-of-death)",
        ));
    }
    let ts = |at: usize| u64::from_be_bytes(p[at..at + 8].try_into().expect("8 bytes"));
    if ts(24) != t1_ntp {
        return Err(SntpError::NotOurs);
    }
    let (t2, t3) = (ntp_to_unix_ms(ts(32)), ntp_to_unix_ms(ts(40)));
    if ts(40) == 0 {
        return Err(SntpError::BadAnswer("no transmit timestamp"));
    }
    if t3 < t2 {
        return Err(SntpError::BadAnswer("transmitted before it received"));
    }
    if t3 - t2 > MAX_PROCESSING_MS {
        return Err(SntpError::SlowServer(t3 - t2));
    }
    let ms = |t: SystemTime| {
        t.duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64()
            * 1000.0
    };
    let (t1, t4) = (ms(t1), ms(t4));
    Ok(Sample {
        offset_ms: ((t2 - t1) + (t3 - t4)) / 2.0,
        delay_ms: ((t4 - t1) - (t3 - t2)).max(0.0),
        stratum,
    })
}

/// Queries every server in parallel. Answers whose offset is more than
/// [`AGREE_MS`] from the median of all answers are dropped (a server that is wrong,
/// or lies); of the rest, the one with the smallest delay (the least disturbed by the
/// network) is returned. When the agreeing answers are not a strict majority (two
/// servers that disagree, say) none is believed: an error, and the caller keeps the
/// offset it had. With a single answer there is nothing to compare it with.
pub async fn query_all(
    servers: &[String],
    timeout: Duration,
) -> Result<(String, Sample), Vec<(String, SntpError)>> {
    let queries = servers
        .iter()
        .map(|s| async move { (s.clone(), query(s, timeout).await) });
    let results = futures::future::join_all(queries).await;
    let mut answers: Vec<(String, Sample)> = Vec::new();
    let mut errors = Vec::new();
    for (server, r) in results {
        match r {
            Ok(s) => answers.push((server, s)),
            Err(e) => errors.push((server, e)),
        }
    }
    if answers.is_empty() {
        return Err(errors);
    }
    let mut offsets: Vec<f64> = answers.iter().map(|(_, s)| s.offset_ms).collect();
    offsets.sort_by(f64::total_cmp);
    let median = offsets[(offsets.len() - 1) / 2];
    let agreeing: Vec<&(String, Sample)> = answers
        .iter()
        .filter(|(_, s)| (s.offset_ms - median).abs() <= AGREE_MS)
        .collect();
    if agreeing.len() * 2 <= answers.len() {
        errors.push((
            "all".to_string(),
            SntpError::Disagree {
                spread_ms: offsets[offsets.len() - 1] - offsets[0],
            },
        ));
        return Err(errors);
    }
    for (server, s) in answers
        .iter()
        .filter(|(_, s)| (s.offset_ms - median).abs() > AGREE_MS)
    {
        tracing::warn!(%server, offset_ms = s.offset_ms, median_ms = median, "SNTP server disagrees with the others; ignored");
    }
    let best = agreeing
        .into_iter()
        .min_by(|a, b| a.1.delay_ms.total_cmp(&b.1.delay_ms))
        .expect("a majority is not empty");
    Ok(best.clone())
}
