//! Several profiles on one machine, no flags: when the default API port (7420) or
//! peer-to-peer port (7421) is taken, by another profile's daemon or any program,
//! `starling up` takes a free one and says so. The profile remembers it
//! (`ports.json`) and tries it first next time, so its web UI link stays the same;
//! clients find the API through the profile (`api.json`) wherever it listens.

use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr, TcpListener as StdTcpListener, UdpSocket};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use starling_node::{Multiaddr, ProfileDir};
use tokio::net::TcpListener;

use crate::settings::Settings;

/// The ports a profile fell back to when the defaults were taken.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fallback {
    pub api: Option<u16>,
    pub p2p: Option<u16>,
}

impl Fallback {
    /// What the profile remembers (nothing when the file is missing or unreadable:
    /// it is only a preference).
    pub fn load(dir: &ProfileDir) -> Self {
        std::fs::read(dir.ports_path())
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    pub fn save(&self, dir: &ProfileDir) {
        let json = serde_json::to_vec_pretty(self).expect("plain struct");
        if let Err(e) = std::fs::write(dir.ports_path(), json) {
            tracing::warn!(error = %e, "cannot remember the ports taken");
        }
    }
}

/// Binds the API. The default address's port taken: the remembered fallback, else a
/// nearby port, else any free port on the same address. A configured address is
/// used or refused.
pub async fn bind_api(settings: &Settings, ports: &mut Fallback) -> anyhow::Result<TcpListener> {
    let addr = settings.api_addr;
    let taken = match TcpListener::bind(addr).await {
        Ok(l) => return Ok(l),
        Err(e) if e.kind() == ErrorKind::AddrInUse && settings.default_api_addr => e,
        Err(e) => {
            return Err(e).with_context(|| {
                format!(
                    "cannot listen on {addr}: another program (or daemon) uses it; pick another with --api-addr 127.0.0.1:0"
                )
            });
        }
    };
    // The remembered fallback, then the nearby ports, then any free one.
    let mut found = None;
    for port in ports.api.into_iter().chain(nearby(addr.port())) {
        if let Ok(l) = TcpListener::bind(SocketAddr::new(addr.ip(), port)).await {
            found = Some(l);
            break;
        }
    }
    let listener = match found {
        Some(l) => l,
        None => TcpListener::bind(SocketAddr::new(addr.ip(), 0))
            .await
            .with_context(|| format!("cannot listen on {addr} ({taken}), nor on a free port"))?,
    };
    let port = listener.local_addr()?.port();
    ports.api = Some(port);
    say!(
        "starling: port {} is taken (another profile's daemon?); the API and web UI listen on port {port} instead (this profile's commands find it)",
        addr.port()
    );
    Ok(listener)
}

/// Fallback ports tried first, near the default and with its parity (the API's
/// 7420 → 7422, 7424, …; the peer-to-peer 7421 → 7423, …, so the two never collide):
/// easy to recognise, and below the range the system hands out for outgoing
/// connections (32768 and up), where a remembered port may be taken by any
/// connection while the daemon is down.
fn nearby(default: u16) -> impl Iterator<Item = u16> {
    (1..=NEARBY).filter_map(move |k| default.checked_add(2 * k))
}

/// How many nearby ports are tried before any free port.
const NEARBY: u16 = 32;

/// Whether `port` is free for TCP and UDP (QUIC) on every interface.
fn free(port: u16) -> bool {
    StdTcpListener::bind((Ipv4Addr::UNSPECIFIED, port)).is_ok()
        && UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port)).is_ok()
}

/// A port free for both TCP and UDP.
fn any_free() -> Option<u16> {
    (0..32).find_map(|_| {
        let port = StdTcpListener::bind((Ipv4Addr::UNSPECIFIED, 0))
            .ok()?
            .local_addr()
            .ok()?
            .port();
        UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port))
            .is_ok()
            .then_some(port)
    })
}

/// The default listen addresses' port taken: moves them (TCP and QUIC alike) to the
/// remembered fallback, else to a free port. Configured addresses stay as they are.
pub fn choose_p2p_port(settings: &mut Settings, ports: &mut Fallback) {
    use starling_node::multiaddr::Protocol;
    if !settings.default_listen {
        return;
    }
    let Some(net) = settings.node.network.as_mut() else {
        return;
    };
    let port_of = |a: &Multiaddr| {
        a.iter().find_map(|p| match p {
            Protocol::Tcp(n) | Protocol::Udp(n) => Some(n),
            _ => None,
        })
    };
    let Some(default) = net.listen.first().and_then(port_of) else {
        return;
    };
    if default == 0 || free(default) {
        return;
    }
    let Some(port) = ports
        .p2p
        .filter(|p| free(*p))
        .or_else(|| nearby(default).find(|p| free(*p)))
        .or_else(any_free)
    else {
        tracing::warn!(
            port = default,
            "the peer-to-peer port is taken and no free one was found"
        );
        return;
    };
    net.listen = net
        .listen
        .iter()
        .map(|a| {
            a.iter()
                .map(|p| match p {
                    Protocol::Tcp(n) if n == default => Protocol::Tcp(port),
                    Protocol::Udp(n) if n == default => Protocol::Udp(port),
                    p => p,
                })
                .collect()
        })
        .collect();
    ports.p2p = Some(port);
    say!(
        "starling: peer-to-peer port {default} is taken (another profile's daemon?); listening on {port} (TCP and QUIC) instead"
    );
}
