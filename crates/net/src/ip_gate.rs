//! Limits and bans per IP address. Peer ids cost nothing to make, addresses do: one
//! address may hold at most [`IpLimits::max_per_ip`] inbound connections, and an
//! address from which [`IpLimits::banned_peers_per_ip`] different peers were banned
//! is banned itself, for as long as the last of those bans. One misbehaving peer
//! behind a shared address (a household's or a carrier's NAT) therefore costs the
//! others nothing; an attacker who rotates its peer id is shut out after a few.
//!
//! An address is an IPv4 address or an IPv6 /64 (what one subscriber gets). Loopback
//! is an address like any other: tests and the devnet, whose nodes all share
//! 127.0.0.1, lift the limit (`max_per_ip: 0`).

use std::collections::{HashMap, HashSet, VecDeque};
use std::convert::Infallible;
use std::task::{Context, Poll};
use std::time::Instant;

use libp2p::core::transport::PortUse;
use libp2p::core::{ConnectedPoint, Endpoint};
use libp2p::multiaddr::Protocol;
use libp2p::swarm::behaviour::{ConnectionClosed, ConnectionEstablished};
use libp2p::swarm::{
    CloseConnection, ConnectionDenied, ConnectionId, FromSwarm, NetworkBehaviour, THandler,
    THandlerInEvent, THandlerOutEvent, ToSwarm, dummy,
};
use libp2p::{Multiaddr, PeerId};

/// Addresses whose bans (or strikes towards one) are remembered at most; beyond it
/// the one ending soonest is forgotten.
const MAX_TRACKED: usize = 4096;

#[derive(Debug, Clone, Copy)]
pub struct IpLimits {
    /// Inbound connections one address may hold; 0: no limit.
    pub max_per_ip: u32,
    /// Different peers banned from one address before the address is banned.
    pub banned_peers_per_ip: usize,
}

impl Default for IpLimits {
    fn default() -> Self {
        Self {
            max_per_ip: 16,
            banned_peers_per_ip: 3,
        }
    }
}

/// Why a connection was refused.
#[derive(Debug, thiserror::Error)]
pub enum IpRefusal {
    #[error("too many connections from one address")]
    Limit,
    #[error("the address is banned")]
    Banned,
}

/// What the gate did, for the counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct IpTally {
    pub refused_limit: u64,
    pub refused_banned: u64,
    pub ips_banned: u64,
}

/// An IPv4 address, or the /64 of an IPv6 one.
type IpKey = u128;

/// The address a connection comes from; `None` for a relayed one, whose first IP is
/// the relay's (its peers must not share the relay's per-address limit or bans).
fn ip_of(addr: &Multiaddr) -> Option<IpKey> {
    if addr.iter().any(|p| matches!(p, Protocol::P2pCircuit)) {
        return None;
    }
    addr.iter().find_map(|p| match p {
        Protocol::Ip4(ip) => Some(u32::from(ip) as u128),
        Protocol::Ip6(ip) => match ip.to_ipv4_mapped() {
            Some(v4) => Some(u32::from(v4) as u128),
            None => Some(u128::from(ip) & !((1u128 << 64) - 1) | (1u128 << 127)),
        },
        _ => None,
    })
}

pub struct IpGate {
    limits: IpLimits,
    /// Each established connection: its peer, its address, whether it is inbound.
    conns: HashMap<ConnectionId, (PeerId, Option<IpKey>, bool)>,
    /// Established inbound connections per address.
    inbound: HashMap<IpKey, u32>,
    /// Banned addresses, until when.
    banned: HashMap<IpKey, Instant>,
    /// Peers banned from each address (at most `banned_peers_per_ip`), and until when
    /// the latest of their bans lasts.
    strikes: HashMap<IpKey, (HashSet<PeerId>, Instant)>,
    to_close: VecDeque<PeerId>,
    tally: IpTally,
}

impl IpGate {
    pub fn new(limits: IpLimits) -> Self {
        Self {
            limits,
            conns: HashMap::new(),
            inbound: HashMap::new(),
            banned: HashMap::new(),
            strikes: HashMap::new(),
            to_close: VecDeque::new(),
            tally: IpTally::default(),
        }
    }

    pub fn tally(&self) -> IpTally {
        self.tally
    }

    /// Addresses banned now.
    pub fn banned_count(&self) -> usize {
        self.banned.len()
    }

    fn is_banned(&self, ip: IpKey, now: Instant) -> bool {
        self.banned.get(&ip).is_some_and(|until| *until > now)
    }

    /// `peer` was banned until `until`: a strike against each address it is connected
    /// from; an address with enough banned peers is banned and its connections closed.
    pub fn peer_banned(&mut self, peer: PeerId, until: Instant) {
        let ips: HashSet<IpKey> = self
            .conns
            .values()
            .filter(|(p, _, _)| *p == peer)
            .filter_map(|(_, ip, _)| *ip)
            .collect();
        for ip in ips {
            if !self.strikes.contains_key(&ip) && self.strikes.len() >= MAX_TRACKED {
                forget_soonest(&mut self.strikes, |(_, t)| *t);
            }
            let (peers, last) = self.strikes.entry(ip).or_insert((HashSet::new(), until));
            peers.insert(peer);
            *last = (*last).max(until);
            if peers.len() >= self.limits.banned_peers_per_ip {
                let until = *last;
                self.strikes.remove(&ip);
                self.ban_ip(ip, until);
            }
        }
    }

    fn ban_ip(&mut self, ip: IpKey, until: Instant) {
        if !self.banned.contains_key(&ip) && self.banned.len() >= MAX_TRACKED {
            forget_soonest(&mut self.banned, |t| *t);
        }
        self.banned.insert(ip, until);
        self.tally.ips_banned += 1;
        tracing::info!(ip = %format_key(ip), "banning an address: several of its peers were banned");
        let peers: HashSet<PeerId> = self
            .conns
            .values()
            .filter(|(_, i, _)| *i == Some(ip))
            .map(|(p, _, _)| *p)
            .collect();
        self.to_close.extend(peers);
    }

    /// Forgets bans and strikes that have ended.
    pub fn lift(&mut self, now: Instant) {
        self.banned.retain(|_, until| *until > now);
        self.strikes.retain(|_, (_, until)| *until > now);
    }

    fn check_inbound(&mut self, remote: &Multiaddr) -> Result<(), ConnectionDenied> {
        let Some(ip) = ip_of(remote) else {
            return Ok(());
        };
        if self.is_banned(ip, Instant::now()) {
            self.tally.refused_banned += 1;
            return Err(ConnectionDenied::new(IpRefusal::Banned));
        }
        let max = self.limits.max_per_ip;
        if max > 0 && self.inbound.get(&ip).copied().unwrap_or(0) >= max {
            self.tally.refused_limit += 1;
            return Err(ConnectionDenied::new(IpRefusal::Limit));
        }
        Ok(())
    }
}

fn forget_soonest<V>(map: &mut HashMap<IpKey, V>, when: impl Fn(&V) -> Instant) {
    if let Some(k) = map.iter().min_by_key(|(_, v)| when(v)).map(|(k, _)| *k) {
        map.remove(&k);
    }
}

fn format_key(ip: IpKey) -> String {
    if ip >> 127 == 1 {
        let v6 = std::net::Ipv6Addr::from(ip & !(1u128 << 127));
        format!("{v6}/64")
    } else {
        std::net::Ipv4Addr::from(ip as u32).to_string()
    }
}

impl NetworkBehaviour for IpGate {
    type ConnectionHandler = dummy::ConnectionHandler;
    type ToSwarm = Infallible;

    fn handle_pending_inbound_connection(
        &mut self,
        _: ConnectionId,
        _: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<(), ConnectionDenied> {
        self.check_inbound(remote)
    }

    fn handle_established_inbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        _: &Multiaddr,
        remote: &Multiaddr,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        // Again: several connections from one address may have been pending at once.
        self.check_inbound(remote)?;
        Ok(dummy::ConnectionHandler)
    }

    fn handle_established_outbound_connection(
        &mut self,
        _: ConnectionId,
        _: PeerId,
        addr: &Multiaddr,
        _: Endpoint,
        _: PortUse,
    ) -> Result<THandler<Self>, ConnectionDenied> {
        if ip_of(addr).is_some_and(|ip| self.is_banned(ip, Instant::now())) {
            self.tally.refused_banned += 1;
            return Err(ConnectionDenied::new(IpRefusal::Banned));
        }
        Ok(dummy::ConnectionHandler)
    }

    fn on_swarm_event(&mut self, event: FromSwarm) {
        match event {
            FromSwarm::ConnectionEstablished(ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                ..
            }) => {
                let (addr, inbound) = match endpoint {
                    ConnectedPoint::Listener { send_back_addr, .. } => (send_back_addr, true),
                    ConnectedPoint::Dialer { address, .. } => (address, false),
                };
                let ip = ip_of(addr);
                if inbound && let Some(ip) = ip {
                    *self.inbound.entry(ip).or_default() += 1;
                }
                self.conns.insert(connection_id, (peer_id, ip, inbound));
            }
            FromSwarm::ConnectionClosed(ConnectionClosed { connection_id, .. }) => {
                if let Some((_, Some(ip), true)) = self.conns.remove(&connection_id)
                    && let Some(n) = self.inbound.get_mut(&ip)
                {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        self.inbound.remove(&ip);
                    }
                }
            }
            _ => {}
        }
    }

    fn on_connection_handler_event(
        &mut self,
        _: PeerId,
        _: ConnectionId,
        event: THandlerOutEvent<Self>,
    ) {
        match event {}
    }

    fn poll(&mut self, _: &mut Context<'_>) -> Poll<ToSwarm<Self::ToSwarm, THandlerInEvent<Self>>> {
        match self.to_close.pop_front() {
            Some(peer_id) => Poll::Ready(ToSwarm::CloseConnection {
                peer_id,
                connection: CloseConnection::All,
            }),
            None => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_ipv4_or_ipv6_slash_64() {
        let a: Multiaddr = "/ip4/10.1.2.3/tcp/1".parse().unwrap();
        let b: Multiaddr = "/ip6/2001:db8:1:2:aaaa::1/tcp/1".parse().unwrap();
        let c: Multiaddr = "/ip6/2001:db8:1:2:bbbb::9/udp/1/quic-v1".parse().unwrap();
        let d: Multiaddr = "/ip6/2001:db8:1:3::1/tcp/1".parse().unwrap();
        let mapped: Multiaddr = "/ip6/::ffff:10.1.2.3/tcp/1".parse().unwrap();
        assert_eq!(ip_of(&b), ip_of(&c));
        assert_ne!(ip_of(&b), ip_of(&d));
        assert_eq!(ip_of(&a), ip_of(&mapped));
        assert_ne!(ip_of(&a), ip_of(&b));
        assert_eq!(format_key(ip_of(&a).unwrap()), "10.1.2.3");
        assert_eq!(format_key(ip_of(&b).unwrap()), "2001:db8:1:2::/64");
        assert_eq!(ip_of(&"/dns4/example.org/tcp/1".parse().unwrap()), None);
        let relayed: Multiaddr = "/ip4/10.1.2.3/tcp/1/p2p/12D3KooWGfwgFcoyE8hQBK1D6EdzRpbJ2ZrWXLu3TYkQUyJnwPLv/p2p-circuit"
            .parse()
            .unwrap();
        assert_eq!(ip_of(&relayed), None, "a relayed peer is not the relay");
    }
}
