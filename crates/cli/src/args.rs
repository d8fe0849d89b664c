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
    #[command(
        after_help = "Examples:\n  starling init --name alice\n  starling --profile work init --name alice_at_work"
    )]
    Init {
        /// Your handle: 2-40 characters of a-z, 0-9 and _.
        #[arg(long)]
        name: String,
    },
    /// Run the node (the daemon) for this profile.
    #[command(
        after_help = "Examples:\n  starling up\n  starling up --bootstrap /ip4/192.0.2.7/tcp/7421/p2p/12D3KooWK99VoVxNE7XzyBwXEzW7xhK7Gpv85r9F3V3fyKSUKPH5\n  starling --profile work up\n  starling up --config deploy/starling.toml\n  starling up --offline --post-ttl 1h"
    )]
    Up(Box<UpArgs>),
    /// Publish a post (1-280 characters). Reads standard input when TEXT is `-` or absent.
    #[command(
        after_help = "Examples:\n  starling post \"hello, world\"\n  starling post -   (reads the post from standard input)"
    )]
    Post { text: Vec<String> },
    /// Show your timeline, newest first.
    #[command(
        after_help = "Examples:\n  starling timeline\n  starling timeline --limit 100\n  starling timeline --before 1733580000000-12D3KooWK99VoVxNE7XzyBwXEzW7xhK7Gpv85r9F3V3fyKSUKPH5-7\n  starling --json timeline"
    )]
    Timeline(PageArgs),
    /// Show your expired posts (the archive).
    #[command(after_help = "Examples:\n  starling archive\n  starling archive --limit 5")]
    Archive(PageArgs),
    /// Republish a post from your archive as a new post.
    #[command(
        after_help = "Examples:\n  starling repost 3   (3: a number `starling archive` shows)"
    )]
    Repost {
        /// The archived post's number (as shown by `starling archive`).
        seq: u64,
    },
    /// Follow users, by handle (`alice` or `@alice`) or key (`12D3KooW...`). Works
    /// while they are offline. Several at once (at most 256) are stored and
    /// delivered together.
    #[command(
        after_help = "Examples:\n  starling follow bob\n  starling follow @bob carol dave\n  starling follow 12D3KooWK99VoVxNE7XzyBwXEzW7xhK7Gpv85r9F3V3fyKSUKPH5"
    )]
    Follow {
        #[arg(required = true, num_args = 1..=256)]
        targets: Vec<String>,
    },
    /// Stop following a user.
    #[command(
        after_help = "Examples:\n  starling unfollow bob\n  starling unfollow 12D3KooWK99VoVxNE7XzyBwXEzW7xhK7Gpv85r9F3V3fyKSUKPH5"
    )]
    Unfollow { target: String },
    /// Who follows you.
    #[command(after_help = "Examples:\n  starling followers\n  starling followers --json")]
    Followers,
    /// Whom you follow (and whether they have acknowledged it yet).
    #[command(after_help = "Examples:\n  starling following\n  starling following --json")]
    Following,
    /// Claim your handle in the network now, or switch to a new one.
    #[command(after_help = "Examples:\n  starling register\n  starling register alice_b")]
    Register {
        /// A new handle (2-40 characters of a-z, 0-9 and _); default: your current one.
        handle: Option<String>,
    },
    /// Print the web UI's sign-in link for this profile's running node.
    #[command(
        after_help = "Examples:\n  starling ui\n  starling ui --open\n  starling --profile work ui --open"
    )]
    Ui {
        /// Open the link in the web browser (`$BROWSER`, else the desktop's default).
        #[arg(long)]
        open: bool,
    },
    /// The interactive menu: post, timeline, followers, following, follow, unfollow,
    /// repost from storage, logout.
    #[command(after_help = "Examples:\n  starling shell\n  starling --profile work shell")]
    Shell,
    /// Start a few named nodes on this machine (loopback), already following each
    /// other, and print their web UI links. Ctrl-C stops them all.
    #[command(
        after_help = "Examples:\n  starling devnet\n  starling devnet --nodes 5 --post-ttl 1m\n  starling devnet --dir /tmp/starling-dev --quiet"
    )]
    Devnet(DevnetArgs),
    /// Show this profile's identity.
    #[command(after_help = "Examples:\n  starling whoami\n  starling --profile work whoami --json")]
    Whoami,
    /// Show the daemon's state.
    #[command(after_help = "Examples:\n  starling status\n  starling status --json")]
    Status,
    /// Run a bootstrap and relay node for a server: no user, no posts. Peers behind
    /// NAT reserve slots on it and are reached through it until hole punching gives
    /// them a direct connection. Its key and peer table live in the data directory.
    #[command(
        after_help = "Examples:\n  starling relay\n  starling relay --config deploy/relay.toml --external-address /dns4/relay.example.org/tcp/7421"
    )]
    Relay(Box<RelayArgs>),
    /// Print the completion script for a shell.
    #[command(
        after_help = "Examples:\n  starling completions bash > ~/.local/share/bash-completion/completions/starling\n  starling completions zsh > ~/.zfunc/_starling\n  starling completions fish > ~/.config/fish/completions/starling.fish"
    )]
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff), or write one page per command into a directory.
    #[command(
        after_help = "Examples:\n  starling man | man -l -\n  starling man --dir ~/.local/share/man/man1"
    )]
    Man {
        /// Write starling.1 and a page per command (starling-up.1, ...) here.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Write your key (encrypted with a passphrase), your posts (the archive too),
    /// your follows and your followers to FILE, to move to another machine. Works
    /// with the node running or not.
    #[command(
        after_help = "Examples:\n  starling export alice.starling\n  starling export alice.starling --passphrase-file ~/.starling-pass --force\n  starling --profile work export -   (to standard output)"
    )]
    Export(crate::backup::ExportArgs),
    /// Restore a profile from `starling export`'s file into this (new) data
    /// directory: the same key, posts, follows and followers.
    #[command(
        after_help = "Examples:\n  starling import alice.starling\n  starling --profile laptop import alice.starling\n  starling --data-dir /srv/alice import alice.starling --force"
    )]
    Import(crate::backup::ImportArgs),
    /// Your key as 24 words to write down (`backup`), and a profile from them
    /// (`restore`).
    #[command(subcommand)]
    #[command(
        after_help = "Examples:\n  starling key backup\n  starling --profile laptop key restore --name alice"
    )]
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

    /// How often each connection is checked (a ping); one whose peer does not answer
    /// within this long (at most 20s) is closed, so a peer gone behind a NAT is
    /// noticed. Default 30s.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub keepalive: Option<std::time::Duration>,

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

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::Cli;

    /// Every command's `--help` ends with examples, and every example is a command
    /// line that parses (the part before a pipe or redirection, without the note in
    /// parentheses).
    #[test]
    fn every_command_has_examples_that_parse() {
        let cmd = Cli::command();
        let mut checked = 0;
        for sub in cmd.get_subcommands() {
            let help = sub
                .get_after_help()
                .map(|h| h.to_string())
                .unwrap_or_default();
            let examples: Vec<&str> = help
                .lines()
                .skip_while(|l| *l != "Examples:")
                .skip(1)
                .collect();
            assert!(!examples.is_empty(), "`{}` has no examples", sub.get_name());
            for example in examples {
                let line = example.trim();
                let line = line.split(" | ").next().unwrap_or(line);
                let line = line.split(" > ").next().unwrap_or(line);
                let line = line.split("   (").next().unwrap_or(line);
                let words = shlex::split(line).unwrap_or_else(|| panic!("quotes in {line:?}"));
                assert_eq!(words[0], "starling", "{example}");
                if let Err(e) = Cli::try_parse_from(&words) {
                    panic!("the example {example:?} does not parse: {e}");
                }
                checked += 1;
            }
        }
        assert!(checked >= 40, "{checked}");
    }
}
