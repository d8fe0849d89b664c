//! What the operating system says about a run: CPU time of processes, how busy
//! the whole machine was, open files, and the filesystem data directories are on.

use std::path::Path;

/// Clock ticks per second of `/proc` times (`getconf CLK_TCK`: 100 on Linux
/// everywhere this runs).
const TICKS_PER_SEC: f64 = 100.0;

/// CPU time a process has used (user + system), in seconds; `None` once it is gone.
pub fn cpu_secs(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = s.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / TICKS_PER_SEC)
}

/// CPU time of this process, seconds.
pub fn self_cpu_secs() -> f64 {
    cpu_secs(std::process::id()).unwrap_or(0.0)
}

/// The machine's CPU counters (busy, total) in ticks, from `/proc/stat`.
#[derive(Debug, Clone, Copy, Default)]
pub struct MachineCpu {
    busy: u64,
    total: u64,
}

impl MachineCpu {
    pub fn now() -> Self {
        let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let Some(line) = text.lines().find(|l| l.starts_with("cpu ")) else {
            return Self::default();
        };
        let v: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|n| n.parse().ok())
            .collect();
        let total: u64 = v.iter().take(8).sum();
        // idle + iowait are not busy.
        let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
        Self {
            busy: total.saturating_sub(idle),
            total,
        }
    }

    /// The share of all cores that was busy between `self` and `later` (0..=1).
    pub fn utilisation_until(&self, later: &MachineCpu) -> f64 {
        let total = later.total.saturating_sub(self.total);
        if total == 0 {
            return 0.0;
        }
        later.busy.saturating_sub(self.busy) as f64 / total as f64
    }
}

/// A run above this machine utilisation is marked in the report: its latencies
/// include waiting for a core.
pub const BUSY_MACHINE: f64 = 0.70;

/// Open file descriptors of a process (sockets, database files, ...).
pub fn open_files(pid: u32) -> Option<usize> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

/// Open file descriptors of this process.
pub fn self_open_files() -> usize {
    open_files(std::process::id()).unwrap_or(0)
}

/// The filesystem type `path` is on (`tmpfs`, `ext4`, `overlay`, ...), from the
/// longest mount point in `/proc/mounts` that contains it.
pub fn filesystem_of(path: &Path) -> String {
    let path = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let mounts = std::fs::read_to_string("/proc/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_dev, at, fs) = (f.next()?, f.next()?, f.next()?);
            path.starts_with(at).then(|| (at.len(), fs.to_string()))
        })
        .max_by_key(|(len, _)| *len)
        .map_or_else(|| "unknown".into(), |(_, fs)| fs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_seen() {
        assert!(self_open_files() > 0);
        assert!(cpu_secs(std::process::id()).is_some());
        assert_eq!(filesystem_of(Path::new("/proc/self")), "proc");
        let a = MachineCpu::now();
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert!(x != 1);
        let u = a.utilisation_until(&MachineCpu::now());
        assert!((0.0..=1.0).contains(&u));
    }
}
