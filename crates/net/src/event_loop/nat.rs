//! Reachability across NATs: what AutoNAT found, relay reservations while we are not
//! known to be publicly reachable, the relay we offer while we are, and hole
//! punching (a relayed connection replaced by a direct one).
//!
//! A node behind NAT cannot be dialed. It reserves a slot on up to
//! [`RELAYS_WANTED`] relays (peers that offer the relay protocol and that we reached
//! directly) and listens on the relayed addresses; identify and the DHT spread them,
//! so followers reach it through a relay. Both ends then try to punch a hole
//! (DCUtR); when it works, the relayed connection is closed and traffic goes direct.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use libp2p::core::ConnectedPoint;
use libp2p::core::transport::ListenerId;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::ConnectionId;
use libp2p::{Multiaddr, PeerId, Swarm, autonat, dcutr, relay};

use super::Counters;
use crate::behaviour::Behaviour;

/// Relays we hold a reservation on at once.
const RELAYS_WANTED: usize = 2;
/// Relay candidates remembered (peers offering a relay, reached directly).
const MAX_CANDIDATES: usize = 16;
/// A relay whose reservation failed or ended is not asked again before this.
const RELAY_BACKOFF: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reachability {
    Unknown,
    Private,
    Public,
}

/// One established connection.
struct Conn {
    peer: PeerId,
    /// Their address: the one we dialed, or the one they came from.
    remote: Multiaddr,
    relayed: bool,
    dialer: bool,
}

pub(super) struct Nat {
    use_relays: bool,
    /// External addresses were configured: the relay is offered whatever AutoNAT says.
    configured_public: bool,
    reachability: Reachability,
    conns: HashMap<ConnectionId, Conn>,
    /// Peers offering a relay that we dialed directly, and the address we used.
    candidates: HashMap<PeerId, Multiaddr>,
    /// Our listeners on relays.
    reservations: HashMap<ListenerId, PeerId>,
    /// Relays that accepted our reservation (and still hold it).
    accepted: HashSet<PeerId>,
    backoff: HashMap<PeerId, Instant>,
    /// As a relay: peers holding a reservation with us (at most the configured
    /// `max_reservations`; the relay refuses more).
    served: HashSet<PeerId>,
    /// As a relay: circuits open per source peer (at most `max_circuits` in all).
    circuits: HashMap<PeerId, u32>,
}

impl Nat {
    pub(super) fn new(use_relays: bool, configured_public: bool) -> Self {
        Self {
            use_relays,
            configured_public,
            reachability: Reachability::Unknown,
            conns: HashMap::new(),
            candidates: HashMap::new(),
            reservations: HashMap::new(),
            accepted: HashSet::new(),
            backoff: HashMap::new(),
            served: HashSet::new(),
            circuits: HashMap::new(),
        }
    }

    /// Our configured external addresses, confirmed at start; the relay is offered.
    pub(super) fn start(&self, swarm: &mut Swarm<Behaviour>, external: &[Multiaddr]) {
        for a in external {
            swarm.add_external_address(a.clone());
        }
        if self.configured_public {
            set_relay(swarm, relay::Status::Enable);
        }
    }

    pub(super) fn on_established(
        &mut self,
        id: ConnectionId,
        peer: PeerId,
        endpoint: &ConnectedPoint,
    ) {
        self.conns.insert(
            id,
            Conn {
                peer,
                remote: endpoint.get_remote_address().clone(),
                relayed: endpoint.is_relayed(),
                dialer: endpoint.is_dialer(),
            },
        );
    }

    pub(super) fn on_closed(&mut self, id: ConnectionId) {
        let Some(conn) = self.conns.remove(&id) else {
            return;
        };
        let direct_left = self
            .conns
            .values()
            .any(|c| c.peer == conn.peer && !c.relayed);
        if !direct_left {
            self.candidates.remove(&conn.peer);
        }
    }

    /// The address a connection's peer reaches us from (`None`: unknown connection)
    /// and whether it is relayed.
    pub(super) fn remote(&self, id: ConnectionId) -> Option<(&Multiaddr, bool)> {
        self.conns.get(&id).map(|c| (&c.remote, c.relayed))
    }

    /// Identify told us what `peer` supports: one that offers a relay and that we
    /// dialed directly is a candidate relay.
    pub(super) fn on_protocols(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        id: ConnectionId,
        peer: PeerId,
        offers_relay: bool,
    ) {
        if !offers_relay {
            self.candidates.remove(&peer);
            return;
        }
        let Some(conn) = self.conns.get(&id) else {
            return;
        };
        if conn.relayed || !conn.dialer {
            return;
        }
        if self.candidates.len() < MAX_CANDIDATES || self.candidates.contains_key(&peer) {
            self.candidates.insert(peer, conn.remote.clone());
        }
        self.maintain(swarm);
    }

    /// Reserves relay slots while we are not known to be public (up to
    /// [`RELAYS_WANTED`]); gives them up once we are.
    pub(super) fn maintain(&mut self, swarm: &mut Swarm<Behaviour>) {
        if !self.use_relays || !swarm.behaviour().relay_client.is_enabled() {
            return;
        }
        if self.reachability == Reachability::Public {
            for (listener, _) in self.reservations.drain() {
                swarm.remove_listener(listener);
            }
            self.accepted.clear();
            return;
        }
        let now = Instant::now();
        self.backoff.retain(|_, until| *until > now);
        while self.reservations.len() < RELAYS_WANTED {
            let reserved: HashSet<PeerId> = self.reservations.values().copied().collect();
            let Some((relay, addr)) = self
                .candidates
                .iter()
                .find(|(p, _)| !reserved.contains(p) && !self.backoff.contains_key(p))
                .map(|(p, a)| (*p, a.clone()))
            else {
                return;
            };
            let circuit = addr
                .with_p2p(relay)
                .unwrap_or_else(|a| a)
                .with(Protocol::P2pCircuit);
            match swarm.listen_on(circuit.clone()) {
                Ok(listener) => {
                    tracing::info!(%relay, "reserving a slot on a relay");
                    self.reservations.insert(listener, relay);
                }
                Err(e) => {
                    tracing::debug!(%circuit, error = %e, "cannot listen through relay");
                    self.backoff.insert(relay, now + RELAY_BACKOFF);
                }
            }
        }
    }

    /// A listener closed: if it was a relay reservation, that relay rests a while
    /// and another is tried.
    pub(super) fn on_listener_closed(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        counters: &mut Counters,
        listener: ListenerId,
    ) {
        if let Some(relay) = self.reservations.remove(&listener) {
            counters.add("relay_reservations_ended");
            self.accepted.remove(&relay);
            self.backoff.insert(relay, Instant::now() + RELAY_BACKOFF);
            self.maintain(swarm);
        }
    }

    pub(super) fn on_autonat(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        counters: &mut Counters,
        ev: autonat::Event,
    ) {
        let autonat::Event::StatusChanged { new, .. } = ev else {
            return;
        };
        self.reachability = match &new {
            autonat::NatStatus::Public(_) => Reachability::Public,
            autonat::NatStatus::Private => Reachability::Private,
            autonat::NatStatus::Unknown => Reachability::Unknown,
        };
        tracing::info!(status = ?new, "reachability changed");
        counters.add("reachability_changes");
        let offer = self.configured_public || self.reachability == Reachability::Public;
        set_relay(
            swarm,
            if offer {
                relay::Status::Enable
            } else {
                relay::Status::Disable
            },
        );
        self.maintain(swarm);
    }

    pub(super) fn on_relay_client(&mut self, counters: &mut Counters, ev: relay::client::Event) {
        match ev {
            relay::client::Event::ReservationReqAccepted {
                relay_peer_id,
                renewal,
                ..
            } => {
                if !renewal {
                    tracing::info!(relay = %relay_peer_id, "relay reservation accepted");
                    counters.add("relay_reservations_made");
                }
                self.accepted.insert(relay_peer_id);
            }
            relay::client::Event::OutboundCircuitEstablished { .. } => {
                counters.add("relay_circuits_dialed");
            }
            relay::client::Event::InboundCircuitEstablished { .. } => {
                counters.add("relay_circuits_accepted");
            }
        }
    }

    /// What we grant others as a relay.
    pub(super) fn on_relay(&mut self, counters: &mut Counters, ev: relay::Event) {
        match ev {
            relay::Event::ReservationReqAccepted {
                src_peer_id,
                renewed,
            } => {
                if !renewed {
                    counters.add("relay_served_reservations");
                }
                self.served.insert(src_peer_id);
            }
            relay::Event::ReservationClosed { src_peer_id }
            | relay::Event::ReservationTimedOut { src_peer_id } => {
                self.served.remove(&src_peer_id);
            }
            relay::Event::ReservationReqDenied { .. } => {
                counters.add("relay_denied_reservations");
            }
            relay::Event::CircuitReqAccepted { src_peer_id, .. } => {
                counters.add("relay_served_circuits");
                *self.circuits.entry(src_peer_id).or_default() += 1;
            }
            relay::Event::CircuitClosed { src_peer_id, .. } => {
                if let Some(n) = self.circuits.get_mut(&src_peer_id) {
                    *n -= 1;
                    if *n == 0 {
                        self.circuits.remove(&src_peer_id);
                    }
                }
            }
            relay::Event::CircuitReqDenied { .. } => counters.add("relay_denied_circuits"),
            _ => {}
        }
    }

    /// Peers whose connection must not be pruned for idleness: the relays holding
    /// our reservations, the peers holding one with us, and the sources of the
    /// circuits we relay.
    pub(super) fn keep(&self) -> impl Iterator<Item = PeerId> + '_ {
        self.reservations
            .values()
            .chain(&self.served)
            .chain(self.circuits.keys())
            .copied()
    }

    /// Hole punching ended. On success the relayed connections to that peer are
    /// closed: traffic goes direct and the relay's slot is freed.
    pub(super) fn on_dcutr(
        &mut self,
        swarm: &mut Swarm<Behaviour>,
        counters: &mut Counters,
        ev: dcutr::Event,
    ) {
        let peer = ev.remote_peer_id;
        match ev.result {
            Ok(direct) => {
                let over = self
                    .conns
                    .get(&direct)
                    .map_or("unknown", |c| transport(&c.remote));
                tracing::info!(%peer, %over, "hole punched: direct connection");
                counters.add("holepunch_succeeded");
                counters.add(&format!("holepunch_succeeded_{over}"));
                self.close_redundant_relays(swarm);
            }
            Err(e) => {
                tracing::info!(%peer, error = %e, "hole punching failed; staying relayed");
                counters.add("holepunch_failed");
            }
        }
    }

    /// Closes relayed connections to peers we also have a direct connection with
    /// (after hole punching, or when either side could dial the other after all):
    /// traffic goes direct and the relay's slot is freed.
    pub(super) fn close_redundant_relays(&self, swarm: &mut Swarm<Behaviour>) {
        let direct = self.direct_peers();
        for (id, c) in &self.conns {
            if c.relayed && direct.contains(&c.peer) {
                swarm.close_connection(*id);
            }
        }
    }

    pub(super) fn reachability(&self) -> &'static str {
        match self.reachability {
            Reachability::Unknown => "unknown",
            Reachability::Private => "private",
            Reachability::Public => "public",
        }
    }

    pub(super) fn relays(&self) -> Vec<PeerId> {
        self.accepted.iter().copied().collect()
    }

    /// Peers with at least one direct (not relayed) connection.
    fn direct_peers(&self) -> HashSet<PeerId> {
        self.conns
            .values()
            .filter(|c| !c.relayed)
            .map(|c| c.peer)
            .collect()
    }

    /// Connected peers we reach only through a relay.
    pub(super) fn relayed_peers(&self) -> Vec<PeerId> {
        let direct = self.direct_peers();
        let relayed: HashSet<PeerId> = self
            .conns
            .values()
            .filter(|c| c.relayed && !direct.contains(&c.peer))
            .map(|c| c.peer)
            .collect();
        relayed.into_iter().collect()
    }
}

/// `quic` or `tcp` (what the address runs over).
fn transport(addr: &Multiaddr) -> &'static str {
    if addr.iter().any(|p| matches!(p, Protocol::QuicV1)) {
        "quic"
    } else {
        "tcp"
    }
}

fn set_relay(swarm: &mut Swarm<Behaviour>, status: relay::Status) {
    if let Some(r) = swarm.behaviour_mut().relay.as_mut() {
        r.set_status(Some(status));
    }
}

/// How far an address reaches: loopback < private (RFC 1918, link-local, CGNAT,
/// IPv6 unique-local) < global. Addresses without an IP (DNS names, relayed ones)
/// count as global.
pub(super) fn scope(addr: &Multiaddr) -> u8 {
    if addr.iter().any(|p| matches!(p, Protocol::P2pCircuit)) {
        return 2;
    }
    match addr.iter().next() {
        Some(Protocol::Ip4(ip)) if ip.is_loopback() => 0,
        Some(Protocol::Ip4(ip))
            if ip.is_private()
                || ip.is_link_local()
                || (ip.octets()[0] == 100 && ip.octets()[1] & 0xc0 == 64) =>
        {
            1
        }
        Some(Protocol::Ip6(ip)) if ip.is_loopback() => 0,
        Some(Protocol::Ip6(ip)) if ip.is_unique_local() || ip.is_unicast_link_local() => 1,
        _ => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_scopes() {
        let scope_of = |a: &str| scope(&a.parse().unwrap());
        assert_eq!(scope_of("/ip4/127.0.0.1/tcp/1"), 0);
        assert_eq!(scope_of("/ip6/::1/tcp/1"), 0);
        assert_eq!(scope_of("/ip4/192.168.1.2/tcp/1"), 1);
        assert_eq!(scope_of("/ip4/10.0.0.2/udp/1/quic-v1"), 1);
        assert_eq!(scope_of("/ip4/100.64.0.1/tcp/1"), 1, "carrier-grade NAT");
        assert_eq!(scope_of("/ip6/fd00::1/tcp/1"), 1);
        assert_eq!(scope_of("/ip4/203.0.113.7/tcp/1"), 2);
        assert_eq!(scope_of("/dns4/relay.example.org/tcp/1"), 2);
        assert_eq!(
            scope_of(
                "/ip4/10.0.0.1/tcp/1/p2p/12D3KooWGfwgFcoyE8hQBK1D6EdzRpbJ2ZrWXLu3TYkQUyJnwPLv/p2p-circuit"
            ),
            2,
            "a relayed address reaches as far as its relay is public"
        );
    }
}
