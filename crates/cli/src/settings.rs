//! `starling up` settings: flags, over a TOML config file, over built-in defaults;
//! validated into the node's configuration.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;
use starling_node::{Multiaddr, NetConfig, NodeConfig, ProfileDir, Quota, RelayLimits};

use crate::args::{NetArgs, RelayArgs, UpArgs, parse_duration};

pub const DEFAULT_API_ADDR: &str = "127.0.0.1:7420";

/// The config file: the same options as the flags.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    pub api_addr: Option<SocketAddr>,
    pub listen: Option<Vec<String>>,
    pub bootstrap: Option<Vec<String>>,
    pub offline: Option<bool>,
    pub dht_refresh: Option<String>,
    pub keepalive: Option<String>,
    pub post_ttl: Option<String>,
    pub ntp_servers: Option<Vec<String>>,
    pub ntp_interval: Option<String>,
    pub gc_interval: Option<String>,
    pub maintenance_interval: Option<String>,
    pub quota_per_author: Option<u64>,
    pub quota_total: Option<u64>,
    pub max_connections: Option<u32>,
    pub max_connections_per_ip: Option<u32>,
    pub external_addrs: Option<Vec<String>>,
    pub use_relays: Option<bool>,
    pub autonat_private_ips: Option<bool>,
    pub relay: Option<RelayFile>,
}

/// The `[relay]` table: what this node grants peers behind NAT while it is publicly
/// reachable.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RelayFile {
    /// `false`: never relay for others.
    pub enabled: Option<bool>,
    pub max_reservations: Option<usize>,
    pub max_reservations_per_peer: Option<usize>,
    pub reservation_duration: Option<String>,
    pub max_circuits: Option<usize>,
    pub max_circuits_per_peer: Option<usize>,
    pub max_circuit_duration: Option<String>,
    pub max_circuit_bytes: Option<u64>,
}

impl RelayFile {
    /// These limits over `defaults`; `None` when relaying is switched off.
    fn limits(&self, defaults: RelayLimits) -> anyhow::Result<Option<RelayLimits>> {
        if self.enabled == Some(false) {
            return Ok(None);
        }
        let at_least_one = |name: &str, v: Option<usize>, d: usize| -> anyhow::Result<usize> {
            match v {
                Some(0) => bail!("relay.{name} = 0: at least 1 (or enabled = false)"),
                Some(n) => Ok(n),
                None => Ok(d),
            }
        };
        let dur = |name: &str, v: &Option<String>, d: Duration| match v {
            Some(s) => duration(&format!("relay.{name}"), s),
            None => Ok(d),
        };
        Ok(Some(RelayLimits {
            max_reservations: at_least_one(
                "max_reservations",
                self.max_reservations,
                defaults.max_reservations,
            )?,
            max_reservations_per_peer: at_least_one(
                "max_reservations_per_peer",
                self.max_reservations_per_peer,
                defaults.max_reservations_per_peer,
            )?,
            reservation_duration: dur(
                "reservation_duration",
                &self.reservation_duration,
                defaults.reservation_duration,
            )?,
            max_circuits: at_least_one("max_circuits", self.max_circuits, defaults.max_circuits)?,
            max_circuits_per_peer: at_least_one(
                "max_circuits_per_peer",
                self.max_circuits_per_peer,
                defaults.max_circuits_per_peer,
            )?,
            max_circuit_duration: dur(
                "max_circuit_duration",
                &self.max_circuit_duration,
                defaults.max_circuit_duration,
            )?,
            max_circuit_bytes: match self.max_circuit_bytes {
                Some(n) if n < 4096 => bail!("relay.max_circuit_bytes = {n}: at least 4096"),
                Some(n) => n,
                None => defaults.max_circuit_bytes,
            },
        }))
    }
}

impl ConfigFile {
    /// Reads `path` (`None`: no file, every option at its default).
    fn read(path: Option<&std::path::Path>) -> anyhow::Result<Self> {
        let Some(p) = path else {
            return Ok(Self::default());
        };
        let text =
            std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display()))?;
        toml::from_str(&text).with_context(|| format!("invalid config file {}", p.display()))
    }

    /// The options set that only a user's node has (not a relay).
    fn user_options(&self) -> Vec<&'static str> {
        [
            ("api_addr", self.api_addr.is_some()),
            ("offline", self.offline.is_some()),
            ("post_ttl", self.post_ttl.is_some()),
            ("ntp_servers", self.ntp_servers.is_some()),
            ("ntp_interval", self.ntp_interval.is_some()),
            ("gc_interval", self.gc_interval.is_some()),
            ("maintenance_interval", self.maintenance_interval.is_some()),
            ("quota_per_author", self.quota_per_author.is_some()),
            ("quota_total", self.quota_total.is_some()),
            ("use_relays", self.use_relays.is_some()),
        ]
        .into_iter()
        .filter_map(|(name, set)| set.then_some(name))
        .collect()
    }

    /// The network: flags over this file over `net`'s defaults.
    fn network(
        &self,
        args: &NetArgs,
        mut net: NetConfig,
        relay_defaults: RelayLimits,
    ) -> anyhow::Result<NetConfig> {
        let flag_or_file = |flag: &Vec<String>, file: &Option<Vec<String>>| {
            if flag.is_empty() {
                file.clone().unwrap_or_default()
            } else {
                flag.clone()
            }
        };
        let listen = flag_or_file(&args.listen, &self.listen);
        if !listen.is_empty() {
            net.listen = multiaddrs("listen", &listen)?;
        }
        net.bootstrap = multiaddrs("bootstrap", &flag_or_file(&args.bootstrap, &self.bootstrap))?;
        net.external_addrs = multiaddrs(
            "external_addrs",
            &flag_or_file(&args.external_addrs, &self.external_addrs),
        )?;
        match args.dht_refresh.as_deref().or(self.dht_refresh.as_deref()) {
            None => {}
            Some("off") => net.periodic_bootstrap = None,
            Some(s) => net.periodic_bootstrap = Some(duration("dht_refresh", s)?),
        }
        let keepalive = match (args.keepalive, self.keepalive.as_deref()) {
            (Some(d), _) => Some(d),
            (None, Some(s)) => Some(duration("keepalive", s)?),
            (None, None) => None,
        };
        if let Some(d) = keepalive {
            if d < Duration::from_secs(1) {
                bail!("keepalive = {d:?}: at least 1s");
            }
            net.keepalive = d;
        }
        if let Some(n) = args.max_connections.or(self.max_connections) {
            if n < 8 {
                bail!("max_connections = {n}: at least 8");
            }
            net.max_connections = n;
        }
        if let Some(n) = args.max_connections_per_ip.or(self.max_connections_per_ip) {
            net.max_connections_per_ip = n;
        }
        if let Some(b) = self.use_relays {
            net.use_relays = b;
        }
        if let Some(b) = self.autonat_private_ips {
            net.autonat_private_ips = b;
        }
        net.relay = self
            .relay
            .as_ref()
            .map_or(Ok(Some(relay_defaults.clone())), |r| {
                r.limits(relay_defaults)
            })?;
        Ok(net)
    }
}

/// Everything `up` needs, validated.
pub struct Settings {
    pub api_addr: SocketAddr,
    pub node: NodeConfig,
    /// The API address and the peer-to-peer listen addresses are the defaults (no
    /// flag or config named them): when their ports are taken (another profile's
    /// daemon), `up` takes free ones instead.
    pub default_api_addr: bool,
    pub default_listen: bool,
}

fn duration(field: &str, s: &str) -> anyhow::Result<Duration> {
    parse_duration(s).map_err(|e| anyhow::anyhow!("{field} = {s:?}: {e}"))
}

fn multiaddrs(field: &str, list: &[String]) -> anyhow::Result<Vec<Multiaddr>> {
    list.iter()
        .map(|a| {
            a.parse::<Multiaddr>().with_context(|| {
                format!("{field}: {a:?} is not a multiaddr (e.g. /ip4/127.0.0.1/tcp/7421)")
            })
        })
        .collect()
}

impl Settings {
    pub fn resolve(dir: &ProfileDir, args: &UpArgs) -> anyhow::Result<Self> {
        let file_path = args.config.clone().or_else(|| {
            let p = dir.config_path();
            p.exists().then_some(p)
        });
        let file = ConfigFile::read(file_path.as_deref())?;

        let default_api_addr = args.api_addr.is_none() && file.api_addr.is_none();
        let default_listen = args.net.listen.is_empty() && file.listen.is_none();
        let api_addr = match (args.api_addr, file.api_addr) {
            (Some(a), _) | (None, Some(a)) => a,
            (None, None) => DEFAULT_API_ADDR.parse().expect("literal"),
        };
        if !api_addr.ip().is_loopback() {
            bail!(
                "api_addr {api_addr} is not a loopback address: the API is for this machine only (use 127.0.0.1)"
            );
        }
        let pick = |flag: &Option<Duration>,
                    file: &Option<String>,
                    name: &str,
                    default: Duration|
         -> anyhow::Result<Duration> {
            match (flag, file) {
                (Some(d), _) => Ok(*d),
                (None, Some(s)) => duration(name, s),
                (None, None) => Ok(default),
            }
        };
        let defaults = NodeConfig::default();
        let mut node = NodeConfig {
            post_ttl: pick(
                &args.post_ttl,
                &file.post_ttl,
                "post_ttl",
                defaults.post_ttl,
            )?,
            ntp_servers: if args.ntp_servers.is_empty() {
                file.ntp_servers.clone().unwrap_or_default()
            } else {
                args.ntp_servers.clone()
            },
            ntp_interval: pick(
                &args.ntp_interval,
                &file.ntp_interval,
                "ntp_interval",
                defaults.ntp_interval,
            )?,
            gc_interval: pick(
                &args.gc_interval,
                &file.gc_interval,
                "gc_interval",
                defaults.gc_interval,
            )?,
            maintenance_interval: pick(
                &args.maintenance_interval,
                &file.maintenance_interval,
                "maintenance_interval",
                defaults.maintenance_interval,
            )?,
            quota: Quota {
                per_author: args
                    .quota_per_author
                    .or(file.quota_per_author)
                    .unwrap_or(defaults.quota.per_author)
                    .max(1),
                total: args
                    .quota_total
                    .or(file.quota_total)
                    .unwrap_or(defaults.quota.total)
                    .max(1),
            },
            trace: args.trace_latency,
            ..defaults
        };
        if args.offline || file.offline.unwrap_or(false) {
            node.network = None;
            return Ok(Self {
                api_addr,
                node,
                default_api_addr,
                default_listen,
            });
        }
        let net = file.network(&args.net, NetConfig::default(), RelayLimits::default())?;
        node.network = Some(net);
        Ok(Self {
            api_addr,
            node,
            default_api_addr,
            default_listen,
        })
    }
}

/// What `starling relay` runs with.
pub struct RelaySettings {
    pub net: NetConfig,
    /// The file it came from, if any.
    pub file: Option<std::path::PathBuf>,
}

impl RelaySettings {
    pub fn resolve(dir: &ProfileDir, args: &RelayArgs) -> anyhow::Result<Self> {
        let file_path = args.config.clone().or_else(|| {
            let p = dir.path().join("relay.toml");
            p.exists().then_some(p)
        });
        let file = ConfigFile::read(file_path.as_deref())?;
        let user = file.user_options();
        if !user.is_empty() {
            bail!(
                "{}: {} only apply to `starling up` (a user's node), not to a relay",
                file_path
                    .as_deref()
                    .unwrap_or(std::path::Path::new("config"))
                    .display(),
                user.join(", ")
            );
        }
        let net = file.network(
            &args.net,
            NetConfig {
                // A relay has no feed of its own, and is what others reserve on.
                use_relays: false,
                ..NetConfig::default()
            },
            RelayLimits::server(),
        )?;
        Ok(Self {
            net,
            file: file_path,
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::args::{Cli, Command};

    fn up_args(argv: &[&str]) -> UpArgs {
        match Cli::parse_from(argv).command {
            Command::Up(a) => *a,
            other => panic!("not `up`: {other:?}"),
        }
    }

    fn resolve_file(text: &str) -> anyhow::Result<Settings> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config.toml");
        std::fs::write(&path, text).expect("write");
        let args = up_args(&["starling", "up", "--config", path.to_str().expect("utf-8")]);
        Settings::resolve(&ProfileDir::new(dir.path()), &args)
    }

    /// The file operators start from (`deploy/starling.toml`) is a valid config.
    #[test]
    fn the_shipped_config_is_valid() {
        let text = include_str!("../../../deploy/starling.toml");
        let s = resolve_file(text).expect("deploy/starling.toml is valid");
        assert_eq!(s.node.ntp_servers.len(), 3, "clock correction is on");
        assert_eq!(s.node.ntp_interval, Duration::from_secs(3600));
        let net = s.node.network.expect("online");
        assert_eq!(net.listen.len(), 2);
        assert!(net.bootstrap.is_empty());
        assert_eq!((net.max_connections, net.max_connections_per_ip), (512, 8));
        assert!(net.use_relays);
        let relay = net.relay.expect("relays for others when public");
        assert_eq!((relay.max_reservations, relay.max_circuits), (64, 16));
    }

    fn resolve_relay(text: &str) -> anyhow::Result<RelaySettings> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("relay.toml");
        std::fs::write(&path, text).expect("write");
        let args = match Cli::parse_from([
            "starling",
            "relay",
            "--config",
            path.to_str().expect("utf-8"),
        ])
        .command
        {
            Command::Relay(a) => *a,
            other => panic!("not `relay`: {other:?}"),
        };
        RelaySettings::resolve(&ProfileDir::new(dir.path()), &args)
    }

    /// `deploy/relay.toml` is a valid relay config, with its limits.
    #[test]
    fn the_shipped_relay_config_is_valid() {
        let s = resolve_relay(include_str!("../../../deploy/relay.toml")).expect("valid");
        assert!(!s.net.use_relays, "a relay reserves on no one");
        let l = s.net.relay.expect("relaying");
        assert_eq!(
            (l.max_reservations, l.max_circuits, l.max_circuit_bytes),
            (1024, 256, 4 << 20)
        );
        assert_eq!(l.max_circuit_duration, Duration::from_secs(600));
        assert_eq!(s.net.max_connections, 4096);
    }

    #[test]
    fn a_relay_config_refuses_user_options_and_bad_limits() {
        let e = resolve_relay("post_ttl = \"1h\"").err().expect("refused");
        assert!(format!("{e:#}").contains("post_ttl"), "{e:#}");
        let e = resolve_relay("[relay]\nmax_circuits = 0")
            .err()
            .expect("refused");
        assert!(format!("{e:#}").contains("relay.max_circuits"), "{e:#}");
        let e = resolve_relay("[relay]\nmax_circuit_duration = \"soon\"")
            .err()
            .expect("refused");
        assert!(
            format!("{e:#}").contains("relay.max_circuit_duration"),
            "{e:#}"
        );
        let off = resolve_relay("[relay]\nenabled = false").expect("valid");
        assert!(off.net.relay.is_none());
    }

    #[test]
    fn a_bad_config_names_what_is_wrong() {
        let e = resolve_file("bootstrap = [\"not an address\"]")
            .err()
            .expect("refused");
        assert!(format!("{e:#}").contains("bootstrap"), "{e:#}");
        let e = resolve_file("listen_on = []").err().expect("refused");
        assert!(format!("{e:#}").contains("listen_on"), "{e:#}");
    }
}
