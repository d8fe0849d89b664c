//! Connection policy: the first bootstrap, who enters the routing table, bans, and
//! closing connections that serve no purpose any more.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use libp2p::gossipsub::TopicHash;
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId, Swarm, identify, relay};

use super::Counters;
use super::nat::{self, Nat};
use crate::behaviour::Behaviour;
use crate::protocol::{KAD_PROTOCOL, STARLING_PROTOCOLS, topic_author};

/// Peers of a followed author's topic kept connected besides the author: they tell
/// us (IHAVE) of posts the author could not send us directly.
const SPARE_TOPIC_PEERS: usize = 2;

pub(super) struct Connections {
    /// The peers dialed at start; reaching the first of them starts a DHT bootstrap.
    bootstrap_peers: HashSet<PeerId>,
    bootstrapped: bool,
    /// When we last exchanged something useful with each connected peer.
    activity: HashMap<PeerId, Instant>,
    /// Banned peers, until when.
    bans: HashMap<PeerId, Instant>,
    idle_timeout: Duration,
}

impl Connections {
    pub(super) fn new(bootstrap_peers: HashSet<PeerId>, idle_timeout: Duration) -> Self {
        Self {
            bootstrap_peers,
            bootstrapped: false,
            activity: HashMap::new(),
            bans: HashMap::new(),
            idle_timeout,
        }
    }

    /// Something useful was exchanged with `peer`.
    pub(super) fn touch(&mut self, peer: PeerId) {
        self.activity.insert(peer, Instant::now());
    }

    /// A connection to `peer` is established; the first bootstrap peer reached starts
    /// the DHT bootstrap.
    pub(super) fn on_established(&mut self, swarm: &mut Swarm<Behaviour>, peer: PeerId) {
        self.touch(peer);
        if self.bootstrap_peers.contains(&peer) && !self.bootstrapped {
            self.bootstrapped = true;
            let _ = swarm.behaviour_mut().kad.bootstrap();
        }
    }

    /// Disconnects `peer` and refuses it for `duration`.
    pub(super) fn ban(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        counters: &mut Counters,
        peer: PeerId,
        duration: Duration,
    ) {
        counters.add("peers_banned");
        tracing::info!(%peer, ?duration, "banning misbehaving peer");
        let until = Instant::now() + duration;
        self.bans.insert(peer, until);
        // Before the block closes its connections: the gate counts the peer against
        // the addresses it is connected from.
        swarm.behaviour_mut().ip_gate.peer_banned(peer, until);
        swarm.behaviour_mut().blocked.block_peer(peer);
    }

    pub(super) fn lift_bans(&mut self, swarm: &mut Swarm<Behaviour>) {
        let now = Instant::now();
        swarm.behaviour_mut().ip_gate.lift(now);
        let expired: Vec<PeerId> = self
            .bans
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(p, _)| *p)
            .collect();
        for p in expired {
            self.bans.remove(&p);
            swarm.behaviour_mut().blocked.unblock_peer(p);
        }
    }

    /// A peer subscribed to our own feed topic: a follower. Followers are kept
    /// connected (pruning spares them) so, unchecked, they could take every connection
    /// slot and leave none for the authors we follow, the DHT and catch-up. Beyond
    /// `slots` followers, one that is nothing else to us is disconnected (counted:
    /// `followers_over_slots`); it still learns of our posts from the followers it is
    /// connected to (gossip's IHAVE), and gets them by catch-up.
    pub(super) fn admit_follower(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        counters: &mut Counters,
        peer: PeerId,
        own_topic: &TopicHash,
        slots: usize,
    ) {
        let gs = &swarm.behaviour().gossipsub;
        let followers = gs
            .all_peers()
            .filter(|(_, topics)| topics.contains(&own_topic))
            .count();
        if followers <= slots {
            return;
        }
        let followed = gs
            .topics()
            .filter_map(|t| topic_author(t.as_str()))
            .any(|a| a.peer_id() == peer);
        if !followed && swarm.disconnect_peer_id(peer).is_ok() {
            counters.add("followers_over_slots");
        }
    }

    /// Closes connections that serve no purpose any more. Gossipsub keeps a stream
    /// open on every connection, so without this a small network ends up all-to-all
    /// (every DHT query leaves connections behind, and the followers of one author
    /// would all stay connected to each other). Kept: our followers (subscribed to
    /// our own feed topic), the authors we follow, a few spare peers per followed
    /// topic (they announce posts the author could not send us),
    /// `busy` peers (we are waiting on them), and anything active within the idle
    /// timeout.
    pub(super) fn prune(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        counters: &mut Counters,
        own_topic: &TopicHash,
        busy: impl IntoIterator<Item = PeerId>,
    ) {
        let now = Instant::now();
        let gs = &swarm.behaviour().gossipsub;
        let ours: HashSet<_> = gs.topics().cloned().collect();
        let mut keep: HashSet<PeerId> = HashSet::new();
        let mut spares: HashMap<&TopicHash, usize> = HashMap::new();
        for (p, topics) in gs.all_peers() {
            if topics.contains(&own_topic) {
                keep.insert(*p);
                continue;
            }
            for t in topics.iter().filter(|t| ours.contains(**t)) {
                let n = spares.entry(*t).or_default();
                if *n < SPARE_TOPIC_PEERS {
                    *n += 1;
                    keep.insert(*p);
                }
            }
        }
        keep.extend(
            ours.iter()
                .filter_map(|t| topic_author(t.as_str()))
                .map(|a| a.peer_id()),
        );
        keep.extend(busy);
        let idle: Vec<PeerId> = swarm
            .connected_peers()
            .filter(|p| !keep.contains(p))
            .filter(|p| {
                self.activity
                    .get(p)
                    .is_none_or(|t| now.duration_since(*t) > self.idle_timeout)
            })
            .copied()
            .collect();
        for p in idle {
            if swarm.disconnect_peer_id(p).is_ok() {
                counters.add("connections_pruned");
            }
        }
        let connected: HashSet<PeerId> = swarm.connected_peers().copied().collect();
        self.activity.retain(|p, _| connected.contains(p));
    }
}

/// Peers are admitted by the protocols they support, not by identify's free-form
/// version string (so another implementation configured with Starling's protocol
/// names takes part): a peer speaking none of Starling's protocols is disconnected;
/// only those that speak our Kademlia go into the routing table, with the addresses
/// it listens on that reach as far as the connection we have with it (a peer
/// reached over the internet has its LAN and loopback addresses left out: they
/// would lead others to someone else's machine). One that offers a relay is a
/// candidate relay.
pub(super) fn on_identify(swarm: &mut Swarm<Behaviour>, nat: &mut Nat, ev: identify::Event) {
    let identify::Event::Received {
        peer_id,
        info,
        connection_id,
    } = ev
    else {
        return;
    };
    if !info
        .protocols
        .iter()
        .any(|p| STARLING_PROTOCOLS.contains(p))
    {
        tracing::debug!(%peer_id, version = %info.protocol_version, "speaks no Starling protocol; disconnecting");
        let _ = swarm.disconnect_peer_id(peer_id);
        return;
    }
    let offers_relay = info.protocols.contains(&relay::HOP_PROTOCOL_NAME);
    nat.on_protocols(swarm, connection_id, peer_id, offers_relay);
    if info.protocols.contains(&KAD_PROTOCOL) {
        let reach = nat.remote(connection_id).map_or(2, |(a, _)| nat::scope(a));
        for addr in info
            .listen_addrs
            .into_iter()
            .filter(|a| is_dialable(a) && nat::scope(a) >= reach)
        {
            swarm.behaviour_mut().kad.add_address(&peer_id, addr);
        }
    }
}

/// Addresses worth telling the DHT about: not `0.0.0.0` / `::`.
fn is_dialable(addr: &Multiaddr) -> bool {
    !addr.iter().any(|p| match p {
        Protocol::Ip4(ip) => ip.is_unspecified(),
        Protocol::Ip6(ip) => ip.is_unspecified(),
        _ => false,
    })
}
