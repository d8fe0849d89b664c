//! The `starling` command line: parses flags, sets up logging, and hands over to the
//! daemon (`up`) or to a client command talking to the daemon's local API. The binary
//! (`src/main.rs`) only calls [`main_with_args`]; the benchmark harness embeds it the
//! same way, to run real daemons from its own executable.
//!
//! Layout: `args` (flags), `settings` (flags + config file), `daemon` (`up`), `api`
//! (HTTP API and OpenAPI document), `users` (the API's user pages), `web` (web UI),
//! `client` (HTTP client of the other commands), `output` (text for people),
//! `shell` (the menu), `devnet` (local network),
//! `relay` (a bootstrap and relay node without a user),
//! `backup` (export, import, the key as 24 words),
//! and [`kit`]: starting daemons, calling them and waiting on them, for devnet, the
//! benchmark harness and the end-to-end tests.

/// `println!` for the daemons' own messages, which must not panic when standard
/// output cannot be written (a full disk under a redirected log): the line is lost.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// The allocator of every executable that links this library: `starling`, and the
/// benchmark harness (its in-process nodes and the daemons it runs from its own
/// executable), so the harness measures what users run. mimalloc rather than glibc's
/// malloc: nodes sharing a process spent about a quarter of their CPU per delivered
/// post in glibc's arenas (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod api;
mod args;
mod backup;
mod client;
mod daemon;
mod devnet;
mod feeds;
pub mod kit;
mod metrics;
mod output;
mod ports;
mod relay;
mod settings;
mod shell;
mod users;
mod web;

use std::io::{IsTerminal, Read};
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Parser;
use serde::Serialize;
use starling_node::{FollowView, PostView, Profile, ProfileDir, Status, TimelinePage, WhoAmI};
use tracing_subscriber::EnvFilter;

use crate::api::{NewPost, RegisterRequest, Target};
use crate::args::{Cli, Command, PageArgs};
use crate::client::Client;

/// Runs the command line given by `args` (the first item is the program name).
pub fn main_with_args<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = Cli::parse_from(args);
    let default_log = if matches!(cli.command, Command::Up(_) | Command::Relay(_)) {
        // Kademlia warns whenever a lone node cannot refresh: normal for a bootstrap node.
        "info,libp2p_kad::behaviour=error"
    } else {
        "warn"
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_log)),
        )
        .with_writer(std::io::stderr)
        // A log line that cannot be written (its disk is full) is lost, nothing
        // more: by default the subscriber would report it with `eprintln!`, which
        // panics when standard error cannot be written, killing whichever thread
        // logged (the store's writer, the network loop).
        .log_internal_errors(false)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init()
        .ok();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // A closed pipe (`starling timeline | head`) is not an error.
            if e.chain()
                .filter_map(|c| c.downcast_ref::<std::io::Error>())
                .any(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The profile directory: `--data-dir`, else `--profile NAME` or `default` under the
/// platform's data directory (e.g. `~/.local/share/starling/profiles/default`).
fn data_dir(cli: &Cli) -> anyhow::Result<ProfileDir> {
    if let Some(d) = &cli.data_dir {
        return Ok(ProfileDir::new(d));
    }
    let name = cli.profile.as_deref().unwrap_or(match cli.command {
        Command::Relay(_) => "relay",
        _ => "default",
    });
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        bail!("profile name {name:?} may contain only letters, digits, _ and -");
    }
    let dirs = directories::ProjectDirs::from("", "", "starling")
        .context("cannot find a home directory: pass --data-dir")?;
    Ok(ProfileDir::new(dirs.data_dir().join("profiles").join(name)))
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let dir = data_dir(&cli)?;
    let runtime = if matches!(cli.command, Command::Up(_) | Command::Relay(_)) {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    };
    let result = runtime.block_on(dispatch(cli, dir));
    // Everything that matters is flushed by now; do not wait for blocking readers
    // (a daemon's stdin watcher would hold the process until its input closed).
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    result
}

fn print<T: Serialize>(
    json: bool,
    value: &T,
    human: impl FnOnce(&T) -> String,
) -> anyhow::Result<()> {
    use std::io::Write;
    let text = if json {
        serde_json::to_string_pretty(value)?
    } else {
        human(value)
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}")?;
    Ok(())
}

fn now_ms() -> u64 {
    starling_node::clock::system_ms()
}

fn page_query(p: &PageArgs) -> String {
    let mut q = format!("?limit={}", p.limit);
    if let Some(b) = &p.before {
        q.push_str("&before=");
        q.push_str(&percent_encode(b));
    }
    q
}

/// Cursors are `[0-9a-zA-Z-]`, but encode anything else a user might type.
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn dispatch(cli: Cli, dir: ProfileDir) -> anyhow::Result<()> {
    let json = cli.json;
    match cli.command {
        Command::Init { name } => {
            let profile = Profile::create(dir.path(), &name, now_ms())?;
            #[derive(Serialize)]
            struct Created {
                handle: String,
                peer_id: String,
                fingerprint: String,
                data_dir: String,
            }
            let created = Created {
                handle: profile.handle.to_string(),
                peer_id: profile.identity.author().to_string(),
                fingerprint: profile.identity.author().fingerprint(),
                data_dir: dir.display().to_string(),
            };
            print(json, &created, |c| {
                format!(
                    "Created profile @{} in {}\nkey:         {}\nfingerprint: {}\nStart your node with: starling --data-dir {} up",
                    c.handle, c.data_dir, c.peer_id, c.fingerprint, c.data_dir
                )
            })
        }
        Command::Up(args) => daemon::up(&dir, *args).await,
        Command::Post { text } => {
            let body = if text.is_empty() || text == ["-"] {
                let mut s = String::new();
                std::io::stdin()
                    .read_to_string(&mut s)
                    .context("cannot read the post from standard input")?;
                s.trim_end_matches('\n').to_string()
            } else {
                text.join(" ")
            };
            let client = Client::for_profile(&dir)?;
            let p: PostView = client.post("/posts", &NewPost { body }).await?;
            print(json, &p, |p| {
                format!(
                    "Posted #{} (expires {})",
                    p.seq,
                    output::relative(p.expires_at, now_ms())
                )
            })
        }
        Command::Timeline(page) => {
            let client = Client::for_profile(&dir)?;
            let t: TimelinePage = client
                .get(&format!("/timeline{}", page_query(&page)))
                .await?;
            print(json, &t, |t| {
                output::timeline(
                    t,
                    now_ms(),
                    "Your timeline is empty: post something!",
                    "starling timeline",
                )
            })
        }
        Command::Archive(page) => {
            let client = Client::for_profile(&dir)?;
            let t: TimelinePage = client
                .get(&format!("/archive{}", page_query(&page)))
                .await?;
            print(json, &t, |t| output::archive(t, now_ms()))
        }
        Command::Repost { seq } => {
            let client = Client::for_profile(&dir)?;
            let p: PostView = client
                .post(&format!("/archive/{seq}/repost"), &serde_json::json!({}))
                .await?;
            print(json, &p, |p| format!("Reposted #{seq} as #{}", p.seq))
        }
        Command::Follow { targets } if targets.len() > 1 => {
            let targets = targets.iter().map(|t| t.trim().to_string()).collect();
            let client = Client::for_profile(&dir)?;
            let outcomes: Vec<api::FollowOutcome> = client
                .post("/follow/many", &api::Targets { targets })
                .await?;
            let failed = outcomes.iter().filter(|o| o.error.is_some()).count();
            print(json, &outcomes, |list| {
                list.iter()
                    .map(|o| match (&o.followed, &o.error) {
                        (Some(f), _) => format!("Following {}.", output::who_follow(f)),
                        (None, Some(e)) => format!("Not following {}: {}", o.target, e.message),
                        (None, None) => format!("Not following {}.", o.target),
                    })
                    .chain(["They will be told as soon as they are reachable.".to_string()])
                    .collect::<Vec<_>>()
                    .join("\n")
            })?;
            if failed > 0 {
                anyhow::bail!("{failed} of {} follows failed", outcomes.len());
            }
            Ok(())
        }
        Command::Follow { mut targets } => {
            let target = targets.pop().expect("clap requires one").trim().to_string();
            let client = Client::for_profile(&dir)?;
            let f: FollowView = client.post("/follow", &Target { target }).await?;
            print(json, &f, |f| {
                format!(
                    "Following {}; they will be told as soon as they are reachable.",
                    output::who_follow(f)
                )
            })
        }
        Command::Unfollow { target } => {
            let client = Client::for_profile(&dir)?;
            let target = target.trim().to_string();
            let f: FollowView = client.post("/unfollow", &Target { target }).await?;
            print(json, &f, |f| {
                format!("No longer following {}.", output::who_follow(f))
            })
        }
        Command::Followers => {
            let client = Client::for_profile(&dir)?;
            let list: Vec<FollowView> = client.get("/followers").await?;
            print(json, &list, |l| {
                output::follow_list(l, now_ms(), "Nobody follows you yet.")
            })
        }
        Command::Following => {
            let client = Client::for_profile(&dir)?;
            let list: Vec<FollowView> = client.get("/following").await?;
            print(json, &list, |l| {
                output::follow_list(
                    l,
                    now_ms(),
                    "You follow nobody yet: starling follow <handle>",
                )
            })
        }
        Command::Register { handle } => {
            let client = Client::for_profile(&dir)?;
            let w: WhoAmI = client
                .post("/register", &RegisterRequest { handle })
                .await?;
            print(json, &w, |w| {
                format!("@{} is registered to your key.", w.handle)
            })
        }
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "starling", &mut std::io::stdout());
            Ok(())
        }
        Command::Man { dir: None } => {
            let cmd = <Cli as clap::CommandFactory>::command();
            clap_mangen::Man::new(cmd).render(&mut std::io::stdout())?;
            Ok(())
        }
        Command::Man { dir: Some(out) } => {
            std::fs::create_dir_all(&out)
                .with_context(|| format!("cannot create {}", out.display()))?;
            let cmd = <Cli as clap::CommandFactory>::command();
            clap_mangen::generate_to(cmd, &out)
                .with_context(|| format!("cannot write the pages into {}", out.display()))?;
            println!("manual pages written to {}", out.display());
            Ok(())
        }
        Command::Ui { open } => {
            let endpoint = dir
                .running_endpoint()
                .ok_or_else(|| client::ClientError::NoDaemon {
                    dir: dir.path().to_path_buf(),
                })?;
            let token = Profile::open(dir.path())?.dir.token()?;
            let url = format!("{}/login?token={token}", endpoint.url);
            let key = feeds::feed_key(&token);
            let feed = |kind: &str| {
                format!(
                    "{}{}{kind}.atom?key={key}",
                    endpoint.url,
                    feeds::FEEDS_PREFIX
                )
            };
            let (timeline, posts) = (feed("timeline"), feed("posts"));
            print(
                json,
                &serde_json::json!({ "url": url, "feeds": { "timeline": timeline, "posts": posts } }),
                |_| {
                    format!(
                        "Open this link in your browser (it signs you in; keep it private):\n{url}\n\n\
                         Atom feeds for a feed reader (their key reads the feeds only):\n\
                         timeline: {timeline}\nyour posts: {posts}"
                    )
                },
            )?;
            if open {
                webbrowser::open(&url).with_context(|| {
                    "cannot open a web browser (set $BROWSER to one); open the link above yourself"
                })?;
            }
            Ok(())
        }
        Command::Shell => shell::run(&dir).await,
        Command::Devnet(args) => devnet::run(args).await,
        Command::Relay(args) => relay::run(&dir, *args).await,
        Command::Whoami => {
            let client = Client::for_profile(&dir)?;
            let w: WhoAmI = client.get("/whoami").await?;
            print(json, &w, output::whoami)
        }
        Command::Status => {
            let client = Client::for_profile(&dir)?;
            let s: Status = client.get("/status").await?;
            print(json, &s, output::status)
        }
        Command::Export(args) => backup::export(&dir, args, json),
        Command::Import(args) => backup::import(&dir, args, json).await,
        Command::Key(backup::KeyCommand::Backup) => backup::key_backup(&dir, json),
        Command::Key(backup::KeyCommand::Restore { name }) => {
            backup::key_restore(&dir, &name, json)
        }
    }
}
