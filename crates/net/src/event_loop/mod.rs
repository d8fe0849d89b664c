//! The swarm task: the only code that touches the [`Swarm`]. It turns commands into
//! swarm calls, keeps the pending replies in maps keyed by query or request id, and
//! turns swarm events into replies and [`NetEvent`]s. It never waits on the node:
//! events go out with `try_send`, and what does not fit is counted.
//!
//! Parts:
//! - [`build`]: the swarm, its listeners, the records kept from before a restart,
//!   the bootstrap dial.
//! - [`queries`]: our DHT queries waiting for their results.
//! - [`requests`]: our sync and social requests waiting for responses or lookups.
//! - [`connections`]: bootstrap, bans, identify, pruning idle connections.
//! - [`nat`]: reachability (AutoNAT), relay reservations and the relay we offer,
//!   hole punching.
//! - [`gossip`] and [`kad`]: the handlers of those behaviours.
//!
//! This module is the loop: it dispatches each command and swarm event to its part.

mod build;
mod connections;
mod gossip;
mod kad;
mod nat;
mod queries;
mod requests;

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use libp2p::kad::RecordKey;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::SwarmEvent;
use libp2p::{Swarm, ping};
use starling_core::Identity;
use tokio::sync::mpsc;

use crate::behaviour::{Behaviour, BehaviourEvent};
use crate::{Command, NetConfig, NetError, NetEvent, NetStatus};
use connections::Connections;
use nat::Nat;
use queries::Queries;
use requests::{Outbound, Requests};

/// Counted events by name, for `status`: refused DHT records, ignored gossip, bans...
#[derive(Default)]
struct Counters(BTreeMap<String, u64>);

impl Counters {
    fn add(&mut self, what: &str) {
        self.add_n(what, 1);
    }

    fn add_n(&mut self, what: &str, n: u64) {
        if n > 0 {
            *self.0.entry(what.to_string()).or_default() += n;
        }
    }
}

/// Milliseconds since the Unix epoch (the node's record expiries are in these).
fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

pub(crate) struct EventLoop {
    swarm: Swarm<Behaviour>,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<NetEvent>,
    queries: Queries,
    requests: Requests,
    connections: Connections,
    nat: Nat,
    counters: Counters,
    write_budget: kad::WriteBudget,
    /// Our own feed topic: the peers subscribed to it are our followers.
    own_topic: libp2p::gossipsub::TopicHash,
    /// Connections that followers alone may hold (see `Connections::admit_follower`).
    follower_slots: usize,
    /// libp2p's own counters (gossipsub's, and libp2p-metrics' of the swarm and
    /// the other protocols).
    registry: prometheus_client::registry::Registry,
    metrics: libp2p::metrics::Metrics,
}

/// Gossip messages received (duplicates included) and their bytes, summed over
/// topics, from gossipsub's own counters.
fn gossip_received(registry: &prometheus_client::registry::Registry) -> (u64, u64) {
    let mut text = String::new();
    if prometheus_client::encoding::text::encode(&mut text, registry).is_err() {
        return (0, 0);
    }
    let sum = |name: &str| -> u64 {
        text.lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with('{'))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    };
    (
        sum("gossipsub_topic_msg_recv_counts_unfiltered_total"),
        sum("gossipsub_topic_msg_recv_bytes_unfiltered_total"),
    )
}

impl EventLoop {
    pub(crate) async fn new(
        identity: &Identity,
        config: &NetConfig,
        commands: mpsc::Receiver<Command>,
        events: mpsc::Sender<NetEvent>,
    ) -> Result<Self, NetError> {
        let mut registry = prometheus_client::registry::Registry::default();
        let mut swarm = build::swarm(identity, config, &mut registry)?;
        let metrics = libp2p::metrics::Metrics::new(&mut registry);
        build::listen(&mut swarm, &config.listen).await?;
        build::load_records(&mut swarm, &config.initial_records);
        let bootstrap_peers = build::dial_bootstrap(&mut swarm, &config.bootstrap)?;
        let nat = Nat::new(config.use_relays, !config.external_addrs.is_empty());
        nat.start(&mut swarm, &config.external_addrs);
        Ok(Self {
            swarm,
            commands,
            events,
            queries: Queries::default(),
            requests: Requests::default(),
            connections: Connections::new(bootstrap_peers, config.idle_timeout),
            nat,
            counters: Counters::default(),
            write_budget: kad::WriteBudget::default(),
            own_topic: crate::protocol::feed_topic(&identity.author()).hash(),
            follower_slots: (config.max_connections as usize * 3 / 4).max(1),
            registry,
            metrics,
        })
    }

    pub(crate) async fn run(mut self) {
        let mut housekeeping = tokio::time::interval(Duration::from_secs(5));
        loop {
            tokio::select! {
                ev = self.swarm.select_next_some() => self.on_swarm_event(ev),
                cmd = self.commands.recv() => match cmd {
                    Some(Command::Shutdown { done }) => {
                        let _ = done.send(());
                        break;
                    }
                    Some(cmd) => self.on_command(cmd),
                    None => break,
                },
                _ = housekeeping.tick() => {
                    let (swarm, counters) = (&mut self.swarm, &mut self.counters);
                    self.connections.lift_bans(swarm);
                    let own = &self.own_topic;
                    let busy = self.requests.peers().chain(self.nat.keep());
                    self.connections.prune(swarm, counters, own, busy);
                    self.nat.maintain(swarm);
                    self.nat.close_redundant_relays(swarm);
                    self.sweep_store();
                }
            }
        }
        tracing::debug!("network task stopped");
    }

    /// Hands an event to the node; gives it back when the queue is full.
    fn emit(&mut self, ev: NetEvent) -> Option<NetEvent> {
        match self.events.try_send(ev) {
            Ok(()) => None,
            Err(mpsc::error::TrySendError::Full(ev))
            | Err(mpsc::error::TrySendError::Closed(ev)) => {
                self.counters.add("events_dropped");
                Some(ev)
            }
        }
    }

    fn on_command(&mut self, cmd: Command) {
        let swarm = &mut self.swarm;
        match cmd {
            Command::Status { reply } => {
                let _ = reply.send(self.status());
            }
            Command::Metrics { reply } => {
                let mut text = String::new();
                if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &self.registry)
                {
                    tracing::warn!(error = %e, "metrics could not be encoded");
                }
                let _ = reply.send(text);
            }
            Command::IsConnected { peer, reply } => {
                let _ = reply.send(swarm.is_connected(&peer));
            }
            Command::ConnectedPeers { reply } => {
                let mut peers = Vec::new();
                for bucket in swarm.behaviour_mut().kad.kbuckets() {
                    for e in bucket.iter() {
                        let peer = *e.node.key.preimage();
                        let addrs: Vec<_> = e.node.value.iter().take(4).cloned().collect();
                        if !addrs.is_empty() {
                            peers.push((peer, addrs));
                        }
                    }
                }
                peers.retain(|(p, _)| swarm.is_connected(p));
                peers.truncate(64);
                let _ = reply.send(peers);
            }
            Command::Dial { addr, reply } => {
                let r = swarm.dial(addr.clone()).map_err(|e| NetError::BadAddress {
                    addr: addr.to_string(),
                    reason: e.to_string(),
                });
                let _ = reply.send(r);
            }
            Command::Subscribe { author } => self.subscribe(author),
            Command::Unsubscribe { author } => self.unsubscribe(author),
            Command::Publish {
                author,
                data,
                reply,
            } => {
                let _ = reply.send(self.publish(author, data));
            }
            Command::Report { verdicts } => {
                for (id, source, acceptance) in verdicts {
                    self.report(id, source, acceptance);
                }
            }
            Command::GetRecord { key, mode, reply } => {
                self.counters.add("dht_get_record");
                let kad = &mut swarm.behaviour_mut().kad;
                self.queries.get_record(kad, key, mode, reply);
            }
            Command::PutRecord { key, value, reply } => {
                self.counters.add("dht_put_record");
                let kad = &mut swarm.behaviour_mut().kad;
                self.queries.put_record(kad, key, value, reply);
            }
            Command::StartProviding { key, reply } => {
                self.counters.add("dht_start_providing");
                let kad = &mut swarm.behaviour_mut().kad;
                self.queries.start_providing(kad, key, reply);
            }
            Command::StopProviding { key } => {
                let kad = &mut swarm.behaviour_mut().kad;
                kad.stop_providing(&RecordKey::new(&key));
            }
            Command::Providers { key, reply } => {
                self.counters.add("dht_get_providers");
                let kad = &mut swarm.behaviour_mut().kad;
                self.queries.providers(kad, key, reply);
            }
            Command::FindPeer { peer, reply } => {
                self.counters.add("dht_find_peer");
                let kad = &mut swarm.behaviour_mut().kad;
                self.queries.find_peer(kad, peer, Some(reply));
            }
            Command::Sync {
                peer,
                request,
                reply,
            } => self
                .requests
                .send(swarm, peer, Outbound::Sync(request, reply)),
            Command::Social {
                peer,
                request,
                reply,
            } => self
                .requests
                .send(swarm, peer, Outbound::Social(request, reply)),
            Command::RespondSync { channel, response } => {
                // Fails only if the requester went away meanwhile.
                let _ = swarm.behaviour_mut().sync.send_response(channel, response);
            }
            Command::RespondSocial { channel, response } => {
                let _ = swarm
                    .behaviour_mut()
                    .social
                    .send_response(channel, response);
            }
            Command::Ban { peer, duration } => {
                self.connections
                    .ban(swarm, &mut self.counters, peer, duration);
            }
            Command::Shutdown { .. } => unreachable!("handled in run"),
        }
    }

    fn status(&mut self) -> NetStatus {
        let local = *self.swarm.local_peer_id();
        let listen_addrs = self
            .swarm
            .listeners()
            .map(|a| a.clone().with(Protocol::P2p(local)))
            .collect();
        let kad = &mut self.swarm.behaviour_mut().kad;
        let routing_table_size = kad.kbuckets().map(|b| b.num_entries()).sum();
        let dht_queries = kad.iter_queries().count();
        let mut counters = self.counters.0.clone();
        let store = kad.store_mut();
        counters.insert("dht_records_held".into(), store.record_count() as u64);
        counters.insert("dht_providers_held".into(), store.provider_count() as u64);
        let (copies, bytes) = gossip_received(&self.registry);
        counters.insert("gossip_copies_received".into(), copies);
        counters.insert("gossip_copy_bytes_received".into(), bytes);
        let gate = &self.swarm.behaviour().ip_gate;
        let t = gate.tally();
        for (name, n) in [
            ("connections_refused_ip_limit", t.refused_limit),
            ("connections_refused_ip_banned", t.refused_banned),
            ("ips_banned", t.ips_banned),
            ("ips_banned_now", gate.banned_count() as u64),
        ] {
            if n > 0 {
                counters.insert(name.into(), n);
            }
        }
        NetStatus {
            peer_id: local,
            listen_addrs,
            external_addrs: self.swarm.external_addresses().cloned().collect(),
            reachability: self.nat.reachability(),
            relays: self.nat.relays(),
            connected_peers: self.swarm.connected_peers().copied().collect(),
            relayed_peers: self.nat.relayed_peers(),
            routing_table_size,
            subscribed_topics: self.swarm.behaviour().gossipsub.topics().count(),
            dht_queries,
            counters,
        }
    }

    /// Counts an event in libp2p-metrics' families.
    fn record(&self, ev: &SwarmEvent<BehaviourEvent>) {
        use libp2p::metrics::Recorder;
        match ev {
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(e)) => self.metrics.record(e),
            SwarmEvent::Behaviour(BehaviourEvent::Kad(e)) => self.metrics.record(e),
            SwarmEvent::Behaviour(BehaviourEvent::Identify(e)) => self.metrics.record(e),
            SwarmEvent::Behaviour(BehaviourEvent::Ping(e)) => self.metrics.record(e),
            SwarmEvent::Behaviour(BehaviourEvent::Relay(e)) => self.metrics.record(e),
            SwarmEvent::Behaviour(BehaviourEvent::Dcutr(e)) => self.metrics.record(e),
            SwarmEvent::Behaviour(_) => {}
            other => self.metrics.record(other),
        }
    }

    fn on_swarm_event(&mut self, ev: SwarmEvent<BehaviourEvent>) {
        self.record(&ev);
        match ev {
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(ev)) => self.on_gossip(ev),
            SwarmEvent::Behaviour(BehaviourEvent::Kad(ev)) => self.on_kad(ev),
            SwarmEvent::Behaviour(BehaviourEvent::Identify(ev)) => {
                connections::on_identify(&mut self.swarm, &mut self.nat, ev);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Autonat(ev)) => {
                self.nat.on_autonat(&mut self.swarm, &mut self.counters, ev);
            }
            SwarmEvent::Behaviour(BehaviourEvent::RelayClient(ev)) => {
                self.nat.on_relay_client(&mut self.counters, ev);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Relay(ev)) => {
                self.nat.on_relay(&mut self.counters, ev);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Dcutr(ev)) => {
                self.nat.on_dcutr(&mut self.swarm, &mut self.counters, ev);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Ping(ping::Event {
                peer,
                connection,
                result: Err(failure),
            })) if !matches!(failure, ping::Failure::Unsupported) => {
                // The peer stopped answering on this connection: it is dead (a NAT
                // mapping dropped, a machine gone) even if TCP does not know yet.
                self.counters.add("connections_closed_unanswered");
                tracing::debug!(%peer, %failure, "ping failed; closing the connection");
                self.swarm.close_connection(connection);
            }
            SwarmEvent::Behaviour(BehaviourEvent::Sync(ev)) => self.on_exchange(ev),
            SwarmEvent::Behaviour(BehaviourEvent::Social(ev)) => self.on_exchange(ev),
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                num_established,
                ..
            } => {
                self.nat.on_established(connection_id, peer_id, &endpoint);
                self.connections.on_established(&mut self.swarm, peer_id);
                if num_established.get() == 1 {
                    let _ = self.emit(NetEvent::Connected { peer: peer_id });
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                num_established,
                ..
            } => {
                self.nat.on_closed(connection_id);
                if num_established == 0 {
                    let _ = self.emit(NetEvent::Disconnected { peer: peer_id });
                }
            }
            SwarmEvent::ListenerClosed { listener_id, .. } => {
                let (swarm, counters) = (&mut self.swarm, &mut self.counters);
                self.nat.on_listener_closed(swarm, counters, listener_id);
            }
            SwarmEvent::NewListenAddr { address, .. } => {
                tracing::info!(%address, "listening");
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                tracing::debug!(?peer_id, %error, "dial failed");
            }
            _ => {}
        }
    }
}
