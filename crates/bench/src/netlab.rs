//! Emulated links for the benchmarks (the kernel here has no `netem`). Every node
//! gets a network namespace of its own with one interface (`eth0`, 10.77.x.y/16),
//! whose veth peer is a port of a switch: a namespace holding all the peers, and a
//! thread of this process that moves Ethernet frames between them (`AF_PACKET`),
//! each after a fixed one-way delay, dropping a share of them at random (ARP is
//! never dropped, so that neighbours are found). Real kernel TCP and QUIC run
//! over it and react to the delay and the losses as on a real link.
//!
//! A node's sockets belong to the namespace of the thread that creates them:
//! [`Lab::enter`] moves the calling thread into a node's namespace (the cluster
//! starts each node on a thread and runtime of its own there).
//!
//! Needs root, `ip` (iproute2) and `ethtool` (checksum and segmentation offloads are
//! switched off on the veths: frames pass through user space whole and checked).
//! Traffic never leaves the namespaces: they have no route out.

use std::collections::{HashMap, VecDeque};
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::poll::{PollFd, PollFlags};

/// What every link does to a frame.
#[derive(Debug, Clone, Copy)]
pub struct LinkSpec {
    /// One-way, node to node (the round trip is twice this).
    pub delay: Duration,
    /// Share of frames dropped, 0..1.
    pub loss: f64,
}

/// Frames held by the switch at once (a router's buffer); beyond it new ones drop.
const QUEUE_MAX: usize = 50_000;

/// What the switch did.
#[derive(Default, Debug)]
pub struct SwitchStats {
    pub forwarded: AtomicU64,
    pub lost: AtomicU64,
    pub overflowed: AtomicU64,
}

/// The namespaces and the switch; all removed when dropped.
pub struct Lab {
    prefix: String,
    nodes: usize,
    stop: Arc<AtomicBool>,
    switch: Option<JoinHandle<anyhow::Result<()>>>,
    pub stats: Arc<SwitchStats>,
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    run("ip", args)
}

fn run(program: &str, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {program}"))?;
    if !out.status.success() {
        bail!(
            "{program} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

impl Lab {
    /// `nodes` namespaces behind one switch whose links do `spec`.
    pub fn new(nodes: usize, spec: LinkSpec) -> anyhow::Result<Self> {
        if nodes == 0 || nodes > 250 * 250 {
            bail!("between 1 and 62500 nodes");
        }
        let mut lab = Self {
            prefix: format!("sbl{}", std::process::id()),
            nodes: 0,
            stop: Arc::new(AtomicBool::new(false)),
            switch: None,
            stats: Arc::default(),
        };
        let sw = lab.switch_ns();
        ip(&["netns", "add", &sw]).context("creating network namespaces needs root")?;
        ip(&["-n", &sw, "link", "set", "lo", "up"])?;
        for k in 0..nodes {
            let ns = lab.ns(k);
            ip(&["netns", "add", &ns])?;
            lab.nodes = k + 1;
            let port = format!("p{k}");
            let addr = format!("{}/16", Self::addr(k));
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            ip(&[
                "-n", &ns, "link", "add", "eth0", "type", "veth", "peer", "name", &port, "netns",
                &sw,
            ])?;
            ip(&["-n", &ns, "addr", "add", &addr, "dev", "eth0"])?;
            for (n, dev) in [(&ns, "eth0"), (&sw, port.as_str())] {
                run(
                    "ip",
                    &[
                        "netns", "exec", n, "ethtool", "-K", dev, "tx", "off", "tso", "off", "gso",
                        "off", "gro", "off",
                    ],
                )
                .context("switching offloads off needs ethtool (apt package ethtool)")?;
                ip(&["-n", n, "link", "set", dev, "up"])?;
            }
        }
        let (stop, stats, ports) = (lab.stop.clone(), lab.stats.clone(), nodes);
        let sw_path = format!("/run/netns/{sw}");
        lab.switch = Some(
            std::thread::Builder::new()
                .name("netlab-switch".into())
                .spawn(move || switch(&sw_path, ports, spec, &stop, &stats))?,
        );
        Ok(lab)
    }

    fn switch_ns(&self) -> String {
        format!("{}-sw", self.prefix)
    }

    fn ns(&self, k: usize) -> String {
        format!("{}-{k}", self.prefix)
    }

    /// Node `k`'s address.
    pub fn addr(k: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 77, (k / 250) as u8, (k % 250 + 1) as u8)
    }

    /// Moves the calling thread into node `k`'s namespace: the sockets it creates
    /// from now on are that node's.
    pub fn enter(&self, k: usize) -> anyhow::Result<()> {
        enter(&format!("/run/netns/{}", self.ns(k)))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(s) = self.switch.take() {
            let _ = s.join();
        }
        for k in 0..self.nodes {
            let _ = ip(&["netns", "del", &self.ns(k)]);
        }
        let _ = ip(&["netns", "del", &self.switch_ns()]);
    }
}

fn enter(path: &str) -> anyhow::Result<()> {
    let f = std::fs::File::open(path).with_context(|| format!("cannot open {path}"))?;
    nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET)
        .with_context(|| format!("setns {path}"))
}

/// A raw socket on interface `name`, non-blocking, every protocol.
fn packet_socket(name: &str) -> anyhow::Result<OwnedFd> {
    use nix::sys::socket::{AddressFamily, LinkAddr, SockFlag, SockProtocol, SockType};
    let fd = nix::sys::socket::socket(
        AddressFamily::Packet,
        SockType::Raw,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        SockProtocol::EthAll,
    )
    .context("packet socket")?;
    let index =
        nix::net::if_::if_nametoindex(name).with_context(|| format!("no interface {name}"))?;
    // nix reads link-layer addresses but has no constructor for one to bind to.
    let mut sll: libc::sockaddr_ll = zeroed_sll();
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
    sll.sll_ifindex = index as i32;
    #[allow(unsafe_code)]
    // SAFETY: `sll` is a fully initialised sockaddr_ll of the length given.
    let addr = unsafe {
        <LinkAddr as nix::sys::socket::SockaddrLike>::from_raw(
            (&sll as *const libc::sockaddr_ll).cast(),
            Some(std::mem::size_of::<libc::sockaddr_ll>() as u32),
        )
    }
    .context("link address")?;
    nix::sys::socket::bind(fd.as_raw_fd(), &addr).with_context(|| format!("bind to {name}"))?;
    Ok(fd)
}

/// A sockaddr_ll of zeros (every field is an integer or an array of them).
fn zeroed_sll() -> libc::sockaddr_ll {
    libc::sockaddr_ll {
        sll_family: 0,
        sll_protocol: 0,
        sll_ifindex: 0,
        sll_hatype: 0,
        sll_pkttype: 0,
        sll_halen: 0,
        sll_addr: [0; 8],
    }
}

/// Receives one frame that came in on the port (not one we sent out of it).
fn recv_frame(fd: &OwnedFd, buf: &mut [u8]) -> Option<usize> {
    use nix::sys::socket::LinkAddr;
    loop {
        let (n, from) = nix::sys::socket::recvfrom::<LinkAddr>(fd.as_raw_fd(), buf).ok()?;
        if from.is_some_and(|a| a.pkttype() == libc::PACKET_OUTGOING) {
            continue;
        }
        return Some(n);
    }
}

fn send_frame(fd: &OwnedFd, frame: &[u8]) -> bool {
    nix::sys::socket::send(fd.as_raw_fd(), frame, nix::sys::socket::MsgFlags::empty()).is_ok()
}

/// The switch: learns which port each MAC address is behind, delays every frame by
/// `spec.delay` (in arrival order: one delay for all keeps the queue sorted), drops
/// `spec.loss` of them, floods broadcasts and unknown destinations.
fn switch(
    ns: &str,
    ports: usize,
    spec: LinkSpec,
    stop: &AtomicBool,
    stats: &SwitchStats,
) -> anyhow::Result<()> {
    enter(ns)?;
    let socks: Vec<OwnedFd> = (0..ports)
        .map(|k| packet_socket(&format!("p{k}")))
        .collect::<anyhow::Result<_>>()?;
    let mut macs: HashMap<[u8; 6], usize> = HashMap::new();
    let mut queue: VecDeque<(Instant, usize, Vec<u8>)> = VecDeque::new();
    let mut rng = fastrand::Rng::with_seed(0x5eed);
    let mut buf = vec![0u8; 65536];
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        let wait = queue
            .front()
            .map_or(Duration::from_millis(20), |f| {
                f.0.saturating_duration_since(now)
            })
            .min(Duration::from_millis(20));
        let mut pollfds: Vec<PollFd> = socks
            .iter()
            .map(|s| PollFd::new(s.as_fd(), PollFlags::POLLIN))
            .collect();
        let ms = u16::try_from(wait.as_micros().div_ceil(1000)).unwrap_or(20);
        let _ = nix::poll::poll(&mut pollfds, ms);
        let ready: Vec<bool> = pollfds
            .iter()
            .map(|p| p.revents().is_some_and(|r| !r.is_empty()))
            .collect();
        let now = Instant::now();
        for (port, sock) in socks.iter().enumerate() {
            if !ready[port] {
                continue;
            }
            for _ in 0..256 {
                let Some(n) = recv_frame(sock, &mut buf) else {
                    break;
                };
                if n < 14 {
                    continue;
                }
                let frame = &buf[..n];
                let src: [u8; 6] = frame[6..12].try_into().expect("6 bytes");
                macs.insert(src, port);
                let arp = frame[12..14] == [0x08, 0x06];
                if !arp && rng.f64() < spec.loss {
                    stats.lost.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                if queue.len() >= QUEUE_MAX {
                    stats.overflowed.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                queue.push_back((now + spec.delay, port, frame.to_vec()));
            }
        }
        while queue.front().is_some_and(|f| f.0 <= now) {
            let (_, from, frame) = queue.pop_front().expect("front exists");
            let dst: [u8; 6] = frame[0..6].try_into().expect("6 bytes");
            match macs.get(&dst) {
                Some(&to) if to != from => {
                    send_frame(&socks[to], &frame);
                }
                Some(_) => {}
                None => {
                    for (to, s) in socks.iter().enumerate() {
                        if to != from {
                            send_frame(s, &frame);
                        }
                    }
                }
            }
            stats.forwarded.fetch_add(1, Ordering::Relaxed);
        }
    }
    Ok(())
}
