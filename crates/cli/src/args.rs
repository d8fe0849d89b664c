//! Command-line arguments (clap derive), parsed into validated values by `main`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "starling",
    version,
    about = "Starling: a peer-to-peer timeline with no server",
    long_about = "Starling: a peer-to-peer timeline with no server.\n\n\
        Every user runs a node (`starling up`); the other commands talk to the node of \
        the selected profile through its local HTTP API."
)]
pub struct Cli {
    /// The profile's data directory (overrides --profile).
    #[arg(long, global = true, env = "STARLING_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// A named profile under the platform's data directory.
    #[arg(long, global = true, env = "STARLING_PROFILE", value_name = "NAME")]
    pub profile: Option<String>,

    /// Print JSON instead of text meant for people.
    #[arg(long, global = true)]
    pub json: bool,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a profile: a new key pair and the handle you want.
    Init {
        /// Your handle: 2-40 characters of a-z, 0-9 and _.
        #[arg(long)]
        name: String,
    },
    /// Run the node (the daemon) for this profile.
    Up(Box<UpArgs>),
    /// Publish a post (1-280 characters). Reads standard input when TEXT is `-` or absent.
    Post { text: Vec<String> },
    /// Show your timeline, newest first.
    Timeline(PageArgs),
    /// Show your expired posts (the archive).
    Archive(PageArgs),
    /// Republish a post from your archive as a new post.
    Repost {
        /// The archived post's number (as shown by `starling archive`).
        seq: u64,
    },
    /// Follow users, by handle (`alice` or `@alice`) or key (`12D3KooW...`). Works
    /// while they are offline. Several at once (at most 256) are stored and
    /// delivered together.
    Follow {
        #[arg(required = true, num_args = 1..=256)]
        targets: Vec<String>,
    },
    /// Stop following a user.
    Unfollow { target: String },
    /// Who follows you.
    Followers,
    /// Whom you follow (and whether they have acknowledged it yet).
    Following,
    /// Claim your handle in the network now, or switch to a new one.
    Register {
        /// A new handle (2-40 characters of a-z, 0-9 and _); default: your current one.
        handle: Option<String>,
    },
    /// Print the web UI's sign-in link for this profile's running node.
    Ui,
    /// The interactive menu: post, timeline, followers, following, follow, unfollow,
    /// repost from storage, logout.
    Shell,
    /// Start a few named nodes on this machine (loopback), already following each
    /// other, and print their web UI links. Ctrl-C stops them all.
    Devnet(DevnetArgs),
    /// Show this profile's identity.
    Whoami,
    /// Show the daemon's state.
    Status,
    /// Run a bootstrap and relay node for a server: no user, no posts. Peers behind
    /// NAT reserve slots on it and are reached through it until hole punching gives
    /// them a direct connection. Its key and peer table live in the data directory.
    Relay(Box<RelayArgs>),
    /// Write your key (encrypted with a passphrase), your posts (the archive too),
    /// your follows and your followers to FILE, to move to another machine. Works
    /// with the node running or not.
    Export(crate::backup::ExportArgs),
    /// Restore a profile from `starling export`'s file into this (new) data
    /// directory: the same key, posts, follows and followers.
    Import(crate::backup::ImportArgs),
    /// Your key as 24 words to write down (`backup`), and a profile from them
    /// (`restore`).
    #[command(subcommand)]
    Key(crate::backup::KeyCommand),
}

#[derive(Debug, Args)]
pub struct PageArgs {
    /// How many posts to show.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=500))]
    pub limit: u64,
    /// Show posts older than this cursor (printed at the end of a page).
    #[arg(long, value_name = "CURSOR")]
    pub before: Option<String>,
}

/// Options of `starling up`. Each may also come from a TOML config file (the same
/// names with `_` for `-`): `--config FILE`, or `<data dir>/config.toml` when present.
/// Flags win over the file.
#[derive(Debug, Args, Clone, Default)]
pub struct UpArgs {
    /// A TOML file with these options (default: `<data dir>/config.toml` if present).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Where the local HTTP API and web UI listen (loopback only; port 0 picks one).
    /// Default 127.0.0.1:7420.
    #[arg(long, env = "STARLING_API_ADDR")]
    pub api_addr: Option<SocketAddr>,

    #[command(flatten)]
    pub net: NetArgs,

    /// Run without network: a local node only.
    #[arg(long)]
    pub offline: bool,

    /// Lifetime of your new posts (e.g. 24h, 90m, 5s). Default 24h.
    #[arg(long, value_parser = parse_duration)]
    pub post_ttl: Option<Duration>,

    /// An SNTP server (host:port) to correct the clock with; repeatable. None by default:
    /// the system clock is used as it is.
    #[arg(long = "ntp-server", value_name = "HOST:PORT")]
    pub ntp_servers: Vec<String>,

    /// How often to query the SNTP servers. Default 15m.
    #[arg(long, value_parser = parse_duration)]
    pub ntp_interval: Option<Duration>,

    /// How often expired posts of others are deleted. Default 30s.
    #[arg(long, value_parser = parse_duration)]
    pub gc_interval: Option<Duration>,

    /// How often the node re-announces itself and looks for new followers. Default 60s.
    #[arg(long, value_parser = parse_duration)]
    pub maintenance_interval: Option<Duration>,

    /// Posts kept per followed author (their newest; older ones are evicted at the
    /// next GC round). Default 10000.
    #[arg(long, value_name = "POSTS", value_parser = clap::value_parser!(u64).range(1..))]
    pub quota_per_author: Option<u64>,

    /// Posts of others kept in all (the oldest are evicted first; your own posts are
    /// never evicted). Default 1000000.
    #[arg(long, value_name = "POSTS", value_parser = clap::value_parser!(u64).range(1..))]
    pub quota_total: Option<u64>,

    /// Keep a monotonic-clock stamp of each stage every post passes (API, signed,
    /// committed, sent; received, verified, stored, event), served at
    /// `/api/v1/trace`: the benchmark's latency breakdown.
    #[arg(long)]
    pub trace_latency: bool,

    /// Stop when standard input closes (used by `devnet`, so its nodes never outlive it).
    #[arg(long, hide = true)]
    pub stop_on_stdin_eof: bool,
}

/// Peer-to-peer options shared by `up` and `relay` (also from the config file).
#[derive(Debug, Args, Clone, Default)]
pub struct NetArgs {
    /// A peer-to-peer listen address; repeatable. Default: TCP and QUIC on port 7421
    /// of every interface (`/ip4/0.0.0.0/tcp/7421`, `/ip4/0.0.0.0/udp/7421/quic-v1`).
    #[arg(long = "listen", value_name = "MULTIADDR")]
    pub listen: Vec<String>,

    /// A peer to join the network through (`/ip4/.../tcp/.../p2p/12D3KooW...`);
    /// repeatable. Without any, this node is a bootstrap node itself.
    #[arg(long = "bootstrap", value_name = "MULTIADDR")]
    pub bootstrap: Vec<String>,

    /// An address this node is publicly reachable at (a server's public IP or DNS
    /// name with its port); repeatable. Advertised at once, and the node offers
    /// itself as a relay. Default: none (AutoNAT finds out).
    #[arg(long = "external-address", value_name = "MULTIADDR")]
    pub external_addrs: Vec<String>,

    /// How often Kademlia refreshes its routing table (e.g. 5m), or `off`.
    #[arg(long, value_name = "DURATION|off")]
    pub dht_refresh: Option<String>,

    /// Most peer-to-peer connections (on a user's node, followers alone hold at most three quarters).
    /// Default 512.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(8..))]
    pub max_connections: Option<u32>,

    /// Inbound peer-to-peer connections one IP address (an IPv6 /64) may hold; 0
    /// lifts the limit (nodes sharing one address, as on loopback). Default 16.
    #[arg(long, value_name = "N")]
    pub max_connections_per_ip: Option<u32>,
}

/// Options of `starling relay`; from a TOML file too (`--config`, or
/// `<data dir>/relay.toml` when present), whose `[relay]` table sets the limits.
#[derive(Debug, Args, Clone, Default)]
pub struct RelayArgs {
    /// A TOML file with these options and the relay's limits (default:
    /// `<data dir>/relay.toml` if present; see deploy/relay.toml).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    #[command(flatten)]
    pub net: NetArgs,
}

#[derive(Debug, Args, Clone)]
pub struct DevnetArgs {
    /// How many nodes (alice, bob, carol, dave, ...).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u16).range(1..=50))]
    pub nodes: u16,
    /// Lifetime of posts (short ones show expiry and the archive quickly).
    #[arg(long, default_value = "24h", value_parser = parse_duration)]
    pub post_ttl: Duration,
    /// Keep the profiles here (reused next time) instead of a temporary directory.
    #[arg(long = "dir", value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Do not post a greeting from each node.
    #[arg(long)]
    pub quiet: bool,
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 24h, 90m, 5s)"))?;
    if d.is_zero() {
        return Err("must be longer than zero".into());
    }
    Ok(d)
}
