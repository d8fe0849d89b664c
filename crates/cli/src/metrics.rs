//! The node's metrics in the OpenMetrics text format (which Prometheus scrapes):
//! Starling's own, built from the node's status at each scrape, followed by
//! libp2p's (libp2p-metrics and gossipsub's own counters), from the swarm.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};
use starling_node::Status;

/// The content type of [`render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

type Labels = Vec<(String, String)>;

/// The network status' entries that are levels, not counts of events.
const NETWORK_GAUGES: &[&str] = &["dht_records_held", "dht_providers_held", "ips_banned_now"];

fn gauge(reg: &mut Registry, name: &str, help: &str, value: i64) {
    let g: Gauge = Gauge::default();
    g.set(value);
    reg.register(name, help, g);
}

fn gauge_f64(reg: &mut Registry, name: &str, help: &str, unit: Option<Unit>, value: f64) {
    let g: Gauge<f64, std::sync::atomic::AtomicU64> = Gauge::default();
    g.set(value);
    match unit {
        Some(unit) => reg.register_with_unit(name, help, unit, g),
        None => reg.register(name, help, g),
    }
}

fn counters<'a>(
    reg: &mut Registry,
    name: &str,
    help: &str,
    label: &str,
    values: impl IntoIterator<Item = (&'a String, &'a u64)>,
) {
    let family = Family::<Labels, Counter>::default();
    for (key, n) in values {
        family
            .get_or_create(&vec![(label.to_string(), key.clone())])
            .inc_by(*n);
    }
    reg.register(name, help, family);
}

/// Starling's metrics from `status`, then `libp2p` (the swarm's own text, ending in
/// `# EOF`; empty for a node without network), as one OpenMetrics exposition.
pub fn render(status: &Status, libp2p: &str) -> String {
    let mut reg = Registry::with_prefix("starling");
    let info = Family::<Labels, Gauge>::default();
    info.get_or_create(&vec![
        ("version".into(), status.version.clone()),
        ("peer_id".into(), status.peer_id.to_string()),
        ("handle".into(), status.handle.clone()),
    ])
    .set(1);
    reg.register("node", "This node: its version, key and handle", info);
    gauge_f64(
        &mut reg,
        "uptime",
        "Time since the daemon started",
        Some(Unit::Seconds),
        status.uptime_secs as f64,
    );
    gauge(
        &mut reg,
        "posts_stored",
        "Posts held, expired ones included",
        status.posts_stored as i64,
    );
    gauge(
        &mut reg,
        "posts_live",
        "Unexpired posts held",
        status.posts_live as i64,
    );
    gauge(
        &mut reg,
        "own_head_seq",
        "The number of this user's newest post",
        status.head_seq as i64,
    );
    gauge(
        &mut reg,
        "following",
        "Users this user follows",
        status.following as i64,
    );
    gauge(
        &mut reg,
        "followers",
        "Users following this user",
        status.followers as i64,
    );
    gauge(
        &mut reg,
        "outbox_pending",
        "Follow statements not yet acknowledged by their followee",
        status.outbox_pending as i64,
    );
    gauge_f64(
        &mut reg,
        "store_disk",
        "The store on disk: database and write-ahead log",
        Some(Unit::Bytes),
        status.store.disk_bytes as f64,
    );
    gauge(
        &mut reg,
        "store_quota_per_author_posts",
        "Posts kept per followed author at most",
        status.store.quota_per_author as i64,
    );
    gauge(
        &mut reg,
        "store_quota_total_posts",
        "Posts of others kept in all at most",
        status.store.quota_total as i64,
    );
    gauge_f64(
        &mut reg,
        "clock_offset",
        "Correction applied to the system clock (from NTP)",
        Some(Unit::Seconds),
        status.clock.offset_ms / 1000.0,
    );
    gauge(
        &mut reg,
        "flagged_authors",
        "Followed authors proven to have signed two posts with one number",
        status.flagged.len() as i64,
    );
    counters(
        &mut reg,
        "rejected",
        "Inputs refused, by reason",
        "reason",
        &status.rejected,
    );
    counters(
        &mut reg,
        "events",
        "Counted events: posts received by push and sync, sync pages and posts served, garbage collection runs and deletions, clock notices, ...",
        "event",
        &status.counters,
    );
    if let Some(net) = &status.network {
        gauge(
            &mut reg,
            "peers_connected",
            "Peers connected now",
            net.connected_peers as i64,
        );
        gauge(
            &mut reg,
            "relayed_peers",
            "Peers reached only through a relay",
            net.relayed_peers.len() as i64,
        );
        gauge(
            &mut reg,
            "relays",
            "Relays holding a reservation for this node",
            net.relays.len() as i64,
        );
        gauge(
            &mut reg,
            "routing_table_peers",
            "Peers in the DHT's routing table",
            net.routing_table_size as i64,
        );
        gauge(
            &mut reg,
            "dht_queries",
            "DHT queries under way",
            net.dht_queries as i64,
        );
        let (held, events): (Vec<_>, Vec<_>) = net
            .counters
            .iter()
            .partition(|(name, _)| NETWORK_GAUGES.contains(&name.as_str()));
        counters(
            &mut reg,
            "network_events",
            "Counted network events, by name",
            "event",
            events,
        );
        let state = Family::<Labels, Gauge>::default();
        for (name, n) in held {
            state
                .get_or_create(&vec![("name".to_string(), name.clone())])
                .set(*n as i64);
        }
        reg.register(
            "network_held",
            "What the network part holds now: DHT records and providers, IPs banned",
            state,
        );
    }
    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut text, &reg);
    if !libp2p.trim().is_empty() {
        // One exposition: ours without its end marker, then libp2p's with its own.
        if let Some(ours) = text.strip_suffix("# EOF\n") {
            text = format!("{ours}{libp2p}");
        }
    }
    text
}
