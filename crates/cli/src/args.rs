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
    Up(UpArgs),
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
    /// Show this profile's identity.
    Whoami,
    /// Show the daemon's state.
    Status,
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

#[derive(Debug, Args, Clone)]
pub struct UpArgs {
    /// Where the local HTTP API and web UI listen (loopback only; port 0 picks one).
    #[arg(long, default_value = "127.0.0.1:7420", env = "STARLING_API_ADDR")]
    pub api_addr: SocketAddr,

    /// Lifetime of your new posts (e.g. 24h, 90m, 5s).
    #[arg(long, default_value = "24h", value_parser = parse_duration)]
    pub post_ttl: Duration,

    /// An SNTP server (host:port) to correct the clock with; repeatable. None by default:
    /// the system clock is used as it is.
    #[arg(long = "ntp-server", value_name = "HOST:PORT")]
    pub ntp_servers: Vec<String>,

    /// How often to query the SNTP servers.
    #[arg(long, default_value = "15m", value_parser = parse_duration)]
    pub ntp_interval: Duration,

    /// How often expired posts of others are deleted.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub gc_interval: Duration,
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{e} (examples: 24h, 90m, 5s)"))?;
    if d.is_zero() {
        return Err("must be longer than zero".into());
    }
    Ok(d)
}
