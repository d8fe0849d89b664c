//! Text for people: posts, pages, identity and status.

use std::fmt::Write;

use starling_node::{FollowView, PostView, Status, TimelinePage, WhoAmI};

/// "just now", "42s ago", "5m ago", "3h ago", "2d ago"; "in 5m" for the future.
pub fn relative(ms: u64, now_ms: u64) -> String {
    let (d, future) = if ms > now_ms {
        (ms - now_ms, true)
    } else {
        (now_ms - ms, false)
    };
    let s = d / 1000;
    let amount = match s {
        0..=4 if !future => return "just now".into(),
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m", s / 60),
        3600..=86_399 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    };
    if future {
        format!("in {amount}")
    } else {
        format!("{amount} ago")
    }
}

fn who(p: &PostView) -> String {
    match &p.handle {
        Some(h) => format!("@{h}"),
        None => p.author.to_string(),
    }
}

pub fn post_line(p: &PostView, now_ms: u64) -> String {
    let mut s = format!(
        "{} ({}) · #{} · {}",
        who(p),
        p.fingerprint,
        p.seq,
        relative(p.ts_ms, now_ms)
    );
    if let Some(r) = &p.repost_of {
        let _ = write!(s, " · reposted from #{}", r.seq);
    }
    for line in p.body.lines() {
        let _ = write!(s, "\n    {line}");
    }
    s
}

pub fn timeline(page: &TimelinePage, now_ms: u64, empty: &str, next_cmd: &str) -> String {
    if page.posts.is_empty() {
        return empty.to_string();
    }
    let mut out = String::new();
    for p in &page.posts {
        out.push_str(&post_line(p, now_ms));
        out.push_str("\n\n");
    }
    if let Some(c) = &page.next_cursor {
        let _ = writeln!(out, "more: {next_cmd} --before {c}");
    }
    out.trim_end().to_string()
}

pub fn archive(page: &TimelinePage, now_ms: u64) -> String {
    if page.posts.is_empty() {
        return "Your archive is empty: posts land here when they expire.".into();
    }
    let mut out = String::new();
    for p in &page.posts {
        out.push_str(&post_line(p, now_ms));
        let _ = write!(
            out,
            "\n    (expired {}; repost with: starling repost {})\n\n",
            relative(p.expires_at, now_ms),
            p.seq
        );
    }
    if let Some(c) = &page.next_cursor {
        let _ = writeln!(out, "more: starling archive --before {c}");
    }
    out.trim_end().to_string()
}

pub fn whoami(w: &WhoAmI) -> String {
    format!(
        "@{}\nhandle:      {}\nkey:         {}\nfingerprint: {}\nprofile:     {}",
        w.handle, w.handle_state, w.peer_id, w.fingerprint, w.data_dir
    )
}

/// "@bob (ab12:cd34:ef56:7890)", or the key when the handle is unknown.
pub fn who_follow(f: &FollowView) -> String {
    match &f.handle {
        Some(h) => format!("@{h} ({})", f.fingerprint),
        None => format!("{} ({})", f.peer_id, f.fingerprint),
    }
}

pub fn follow_list(list: &[FollowView], now_ms: u64, empty: &str) -> String {
    if list.is_empty() {
        return empty.to_string();
    }
    list.iter()
        .map(|f| {
            let mut line = format!(
                "{}  {}  since {}",
                who_follow(f),
                f.peer_id,
                relative(f.since_ms, now_ms)
            );
            if f.pending {
                line.push_str("  [pending: not acknowledged yet]");
            }
            line
        })
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn status(s: &Status) -> String {
    let clock = match (&s.clock.ntp.server, &s.clock.ntp.last_error) {
        _ if s.clock.ntp.servers.is_empty() => {
            "system clock (no SNTP server configured)".to_string()
        }
        (Some(server), None) => format!("offset {:+.1} ms (SNTP {server})", s.clock.offset_ms),
        (_, Some(err)) => format!(
            "offset {:+.1} ms (last SNTP round failed: {err})",
            s.clock.offset_ms
        ),
        (None, None) => "waiting for the first SNTP answer".to_string(),
    };
    let clock = match &s.clock.future_refusals {
        Some(f) => format!(
            "{clock}\n           WARNING: {} your posts as dated {:.0} s in the future: this machine's clock runs ahead. Correct it, or name SNTP servers (--ntp-server pool.ntp.org:123).",
            if f.peers == 1 {
                "a follower refuses".to_string()
            } else {
                format!("{} followers refuse", f.peers)
            },
            f.ahead_ms as f64 / 1000.0
        ),
        None => clock,
    };
    let mut out = format!(
        "@{} ({})\nhandle:    {}\nversion:   {}\nuptime:    {}s\nposts:     {} stored, {} live; your newest is #{}\nstore:     {:.1} MiB on disk; keeps at most {} posts per followed user, {} of others in all\npost life: {}\nclock:     {}\nfollowing: {} ({} statements waiting for delivery)\nfollowers: {}",
        s.handle,
        s.peer_id,
        s.handle_state,
        s.version,
        s.uptime_secs,
        s.posts_stored,
        s.posts_live,
        s.head_seq,
        s.store.disk_bytes as f64 / (1024.0 * 1024.0),
        s.store.quota_per_author,
        s.store.quota_total,
        humantime::format_duration(std::time::Duration::from_secs_f64(s.post_ttl_secs)),
        clock,
        s.following,
        s.outbox_pending,
        s.followers,
    );
    match &s.network {
        Some(n) => {
            let _ = write!(
                out,
                "\nnetwork:   {} peers connected ({} through a relay), {} in the routing table",
                n.connected_peers,
                n.relayed_peers.len(),
                n.routing_table_size
            );
            let _ = write!(out, "\nreachable: {}", n.reachability);
            if !n.relays.is_empty() {
                let _ = write!(out, " (through {} relays)", n.relays.len());
            }
            for a in &n.listen_addrs {
                let _ = write!(out, "\n  listening: {a}");
            }
        }
        None => out.push_str("\nnetwork:   off"),
    }
    if !s.rejected.is_empty() {
        let list: Vec<String> = s.rejected.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let _ = write!(out, "\nrejected:  {}", list.join(", "));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::relative;

    #[test]
    fn relative_times() {
        let now = 1_000_000_000;
        assert_eq!(relative(now, now), "just now");
        assert_eq!(relative(now - 42_000, now), "42s ago");
        assert_eq!(relative(now - 300_000, now), "5m ago");
        assert_eq!(relative(now - 3 * 3_600_000, now), "3h ago");
        assert_eq!(relative(now - 2 * 86_400_000, now), "2d ago");
        assert_eq!(relative(now + 86_399_000, now), "in 23h");
    }
}
