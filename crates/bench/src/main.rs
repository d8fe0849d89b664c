//! `starling-bench`: starts many Starling nodes on this machine (loopback only) and
//! measures them: propagation, catch-up, availability under churn, ingest, timeline
//! reads, memory, DHT lookups. Prints a table per scenario and writes
//! `results.json`, SVG plots and `report.md` to the output directory;
//! `--update-doc BENCHMARKS.md` puts the report into that file.
//!
//! Daemons are this same executable running the embedded `starling` command line
//! (`starling-bench starling up ...`), so the harness needs nothing else built.
//!
//! Layout: [`cluster`] (in-process and process nodes), [`scenarios`], [`report`]
//! (tables, JSON, Markdown), [`stats`], [`svg`].

mod breakdown;
mod cluster;
mod netlab;
mod probe;
mod report;
mod scenarios;
mod stats;
mod svg;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use report::{Machine, Report, ScenarioResult};
use scenarios::Sizes;

const ALL: &[&str] = &[
    "propagation",
    "catchup",
    "churn",
    "ingest",
    "timeline",
    "memory",
    "dht",
    "attack",
];

#[derive(Debug, Parser)]
#[command(
    name = "starling-bench",
    about = "Benchmarks of Starling nodes on one machine"
)]
struct Args {
    /// The smoke profile: tiny sizes, under a minute (what CI runs).
    #[arg(long)]
    quick: bool,
    /// Where results go (a directory per run is not created: files are replaced).
    #[arg(long, default_value = "target/bench")]
    out: PathBuf,
    /// Only these scenarios (comma-separated): propagation, catchup, churn, ingest,
    /// timeline, memory, dht, attack.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Write the report into this Markdown file (between its generated-part markers).
    #[arg(long, value_name = "FILE")]
    update_doc: Option<PathBuf>,
    /// Propagation in one process with these follower counts instead of the profile's
    /// (0: none).
    #[arg(long, value_delimiter = ',', value_name = "F,...")]
    followers: Vec<usize>,
    /// Propagation as processes with these follower counts instead of the profile's
    /// (0: none).
    #[arg(long, value_delimiter = ',', value_name = "F,...")]
    proc_followers: Vec<usize>,
    /// Propagation: posts per second (the profile's: 20).
    #[arg(long, value_name = "PER_SEC")]
    rate: Option<f64>,
    /// Propagation: how many posts (the profile's: 200).
    #[arg(long, value_name = "N")]
    posts: Option<usize>,
    /// Propagation over emulated links (network namespaces behind a switch that
    /// delays and drops frames; needs root, iproute2 and ethtool): this many
    /// followers (the profile's: 20; 0: none).
    #[arg(long, value_name = "F")]
    link_followers: Option<usize>,
    /// The emulated links' one-way delay, node to node (the profile's: 50ms).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    link_delay: Option<std::time::Duration>,
    /// The share of frames the emulated links drop, 0-0.5 (the profile's: 0.01).
    #[arg(long, value_name = "SHARE", value_parser = parse_loss)]
    link_loss: Option<f64>,
}

fn parse_loss(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..=0.5).contains(&v) => Ok(v),
        _ => Err(format!("{s:?}: a share between 0 and 0.5 (0.01 is 1%)")),
    }
}

fn main() -> ExitCode {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if argv.get(1).is_some_and(|a| a == "starling") {
        // A daemon started by the harness.
        return starling_cli::main_with_args(argv[1..].iter().cloned());
    }
    if argv.get(1).is_some_and(|a| a == "memprobe") {
        // A fresh process measuring the memory of nodes it starts (see memory.rs).
        let num = |i: usize, d: u64| {
            argv.get(i)
                .and_then(|a| a.to_str()?.parse().ok())
                .unwrap_or(d)
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let r = runtime.block_on(scenarios::memory::probe(
            num(2, 10) as usize,
            std::time::Duration::from_secs(num(3, 5)),
            num(4, 100) as usize,
        ));
        return match r {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let args = Args::parse_from(argv);
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error")),
        )
        .with_writer(std::io::stderr)
        .log_internal_errors(false)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    match runtime.block_on(run(args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(2),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Raises the open-file limit as far as allowed: hundreds of nodes in one process
/// hold thousands of sockets and database files. Returns the limit in force.
fn raise_fd_limit() -> u64 {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let current = getrlimit(Resource::Nofile);
    let hard = current.maximum.unwrap_or(1 << 20);
    // Privileged users may go past the hard limit; everyone may go up to it.
    for want in [1 << 20, hard] {
        let limit = Rlimit {
            current: Some(want),
            maximum: Some(want.max(hard)),
        };
        if setrlimit(Resource::Nofile, limit).is_ok() {
            return want;
        }
    }
    current.current.unwrap_or(1024)
}

/// Runs the scenarios; `Ok(false)` when one of them failed (the others still ran).
async fn run(args: Args) -> anyhow::Result<bool> {
    let fds = raise_fd_limit();
    for o in &args.only {
        anyhow::ensure!(
            ALL.contains(&o.as_str()),
            "unknown scenario {o:?}; known: {}",
            ALL.join(", ")
        );
    }
    let selected = |s: &str| args.only.is_empty() || args.only.iter().any(|o| o == s);
    let mut wanted = if args.quick {
        Sizes::quick()
    } else {
        Sizes::default_profile()
    };
    if !args.followers.is_empty() {
        wanted.prop_followers = args.followers.clone();
    }
    if !args.proc_followers.is_empty() {
        wanted.prop_proc_followers = args.proc_followers.clone();
    }
    if let Some(r) = args.rate {
        anyhow::ensure!(r > 0.0 && r <= 1000.0, "--rate must be in (0, 1000]");
        wanted.prop_rate = r;
    }
    if let Some(p) = args.posts {
        anyhow::ensure!(p > 0, "--posts must be at least 1");
        wanted.prop_posts = p;
    }
    if let Some(f) = args.link_followers {
        wanted.link_followers = f;
    }
    if let Some(d) = args.link_delay {
        wanted.link_delay = d;
    }
    if let Some(l) = args.link_loss {
        wanted.link_loss = l;
    }
    let (sizes, skipped) = wanted.fit(fds);
    let mut run_notes = Vec::new();
    if !skipped.is_empty() {
        let note = format!(
            "Not run: {}. The open-file limit here is {fds}, about {} per in-process node is needed.",
            skipped.join(", "),
            scenarios::FDS_PER_NODE
        );
        eprintln!("{note}");
        run_notes.push(note);
    }
    std::fs::create_dir_all(&args.out)?;
    let out = args.out.clone();
    let started = Instant::now();
    let started_at = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let mut results: Vec<ScenarioResult> = Vec::new();
    let mut ok = true;
    for &name in ALL {
        if !selected(name) {
            continue;
        }
        eprintln!("--- {name} ...");
        let t = Instant::now();
        let r = match name {
            "propagation" => scenarios::propagation::run(&sizes, &out).await,
            "catchup" => scenarios::catchup::run(&sizes).await,
            "churn" => scenarios::churn::run(&sizes).await,
            "ingest" => scenarios::ingest::run(&sizes).await,
            "timeline" => scenarios::timeline::run(&sizes, &out).await,
            "memory" => scenarios::memory::run(&sizes).await,
            "dht" => scenarios::dht::run(&sizes, &out).await,
            "attack" => scenarios::attack::run(&sizes).await,
            _ => unreachable!("checked above"),
        };
        match r {
            Ok(r) => {
                println!("\n{}\n{}", r.title, r.table.text());
                for n in &r.notes {
                    println!("  - {n}");
                }
                for (caption, t) in &r.more {
                    println!("\n{caption}\n{}", t.text());
                }
                results.push(r);
            }
            Err(e) => {
                ok = false;
                eprintln!(
                    "{name} failed after {:.0} s: {e:#}",
                    t.elapsed().as_secs_f64()
                );
            }
        }
    }
    let mut command = "cargo run --release -p starling-bench --".to_string();
    if args.quick {
        command.push_str(" --quick");
    }
    if !args.only.is_empty() {
        command.push_str(&format!(" --only {}", args.only.join(",")));
    }
    let list = |v: &[usize]| {
        v.iter()
            .map(|n| n.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    if !args.followers.is_empty() {
        command.push_str(&format!(" --followers {}", list(&args.followers)));
    }
    if !args.proc_followers.is_empty() {
        command.push_str(&format!(" --proc-followers {}", list(&args.proc_followers)));
    }
    if let Some(r) = args.rate {
        command.push_str(&format!(" --rate {r}"));
    }
    if let Some(p) = args.posts {
        command.push_str(&format!(" --posts {p}"));
    }
    if let Some(f) = args.link_followers {
        command.push_str(&format!(" --link-followers {f}"));
    }
    if let Some(d) = args.link_delay {
        command.push_str(&format!(" --link-delay {}", humantime::format_duration(d)));
    }
    if let Some(l) = args.link_loss {
        command.push_str(&format!(" --link-loss {l}"));
    }
    let report = Report {
        command,
        profile: if args.quick {
            "quick".into()
        } else {
            "default".into()
        },
        started_at,
        total_seconds: started.elapsed().as_secs_f64(),
        machine: Machine::probe(),
        notes: run_notes,
        scenarios: results,
    };
    std::fs::write(
        out.join("results.json"),
        serde_json::to_vec_pretty(&report)?,
    )?;
    std::fs::write(out.join("report.md"), report.markdown())?;
    if let Some(doc) = &args.update_doc {
        report.update_doc(doc)?;
    }
    println!(
        "\n{} scenario(s) in {}; results in {}",
        report.scenarios.len(),
        report::format_secs(report.total_seconds),
        out.display()
    );
    Ok(ok)
}
