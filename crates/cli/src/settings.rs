//! `starling up` settings: flags, over a TOML config file, over built-in defaults;
//! validated into the node's configuration.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;
use starling_node::{Multiaddr, NetConfig, NodeConfig, ProfileDir, Quota};

use crate::args::{UpArgs, parse_duration};

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
    pub post_ttl: Option<String>,
    pub ntp_servers: Option<Vec<String>>,
    pub ntp_interval: Option<String>,
    pub gc_interval: Option<String>,
    pub maintenance_interval: Option<String>,
    pub quota_per_author: Option<u64>,
    pub quota_total: Option<u64>,
    pub max_connections: Option<u32>,
    pub max_connections_per_ip: Option<u32>,
}

/// Everything `up` needs, validated.
pub struct Settings {
    pub api_addr: SocketAddr,
    pub node: NodeConfig,
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
        let file: ConfigFile = match &file_path {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .with_context(|| format!("cannot read {}", p.display()))?;
                toml::from_str(&text)
                    .with_context(|| format!("invalid config file {}", p.display()))?
            }
            None => ConfigFile::default(),
        };

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
                file.ntp_servers.unwrap_or_default()
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
            return Ok(Self { api_addr, node });
        }
        let mut net = NetConfig::default();
        let listen = if args.listen.is_empty() {
            file.listen.unwrap_or_default()
        } else {
            args.listen.clone()
        };
        if !listen.is_empty() {
            net.listen = multiaddrs("listen", &listen)?;
        }
        let bootstrap = if args.bootstrap.is_empty() {
            file.bootstrap.unwrap_or_default()
        } else {
            args.bootstrap.clone()
        };
        net.bootstrap = multiaddrs("bootstrap", &bootstrap)?;
        match args.dht_refresh.as_deref().or(file.dht_refresh.as_deref()) {
            None => {}
            Some("off") => net.periodic_bootstrap = None,
            Some(s) => net.periodic_bootstrap = Some(duration("dht_refresh", s)?),
        }
        if let Some(n) = args.max_connections.or(file.max_connections) {
            if n < 8 {
                bail!("max_connections = {n}: at least 8");
            }
            net.max_connections = n;
        }
        if let Some(n) = args.max_connections_per_ip.or(file.max_connections_per_ip) {
            net.max_connections_per_ip = n;
        }
        node.network = Some(net);
        Ok(Self { api_addr, node })
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
