//! Results: one table (and JSON, and maybe a plot) per scenario, the machine they ran
//! on, and the Markdown report that `--update-doc` writes into BENCHMARKS.md.

use std::fmt::Write;
use std::path::Path;

use serde::Serialize;
use serde_json::Value;

#[derive(Debug, Clone, Serialize)]
pub struct Table {
    pub headers: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&str]) -> Self {
        Self {
            headers: headers.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn markdown(&self) -> String {
        let mut s = format!("| {} |\n", self.headers.join(" | "));
        let _ = writeln!(s, "|{}", " --- |".repeat(self.headers.len()));
        for r in &self.rows {
            let _ = writeln!(s, "| {} |", r.join(" | "));
        }
        s
    }

    /// Aligned plain text for the terminal.
    pub fn text(&self) -> String {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for r in &self.rows {
            for (i, c) in r.iter().enumerate() {
                if i < widths.len() {
                    widths[i] = widths[i].max(c.chars().count());
                }
            }
        }
        let line = |cells: &[String]| {
            cells
                .iter()
                .enumerate()
                .map(|(i, c)| format!("{c:<w$}", w = widths.get(i).copied().unwrap_or(0)))
                .collect::<Vec<_>>()
                .join("  ")
        };
        let mut s = line(&self.headers);
        s.push('\n');
        s.push_str(
            &widths
                .iter()
                .map(|w| "-".repeat(*w))
                .collect::<Vec<_>>()
                .join("  "),
        );
        for r in &self.rows {
            s.push('\n');
            s.push_str(&line(r));
        }
        s
    }
}

/// What one scenario measured.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioResult {
    pub id: String,
    pub title: String,
    pub table: Table,
    /// Every number behind the table.
    pub data: Value,
    /// Observations computed from the numbers (trends, targets met or not).
    pub notes: Vec<String>,
    /// File name of the SVG plot, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plot: Option<String>,
    /// Further tables, each under its caption.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub more: Vec<(String, Table)>,
    pub seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub memory_gib: f64,
    pub kernel: String,
    pub disk_note: String,
}

impl Machine {
    pub fn probe() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name")
                    .map(|r| r.trim_start_matches([' ', '\t', ':']).to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let kib: f64 = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0.0);
        Self {
            cpu,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_gib: (kib / 1024.0 / 1024.0 * 10.0).round() / 10.0,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap_or_default()
                .trim()
                .to_string(),
            disk_note: "temporary directories on the machine's disk".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub command: String,
    pub profile: String,
    pub started_at: String,
    pub total_seconds: f64,
    pub machine: Machine,
    /// What this run could not do on this machine, and why.
    pub notes: Vec<String>,
    pub scenarios: Vec<ScenarioResult>,
}

impl Report {
    pub fn markdown(&self) -> String {
        let m = &self.machine;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "Measured by `{}` ({} profile) on {}, {} cores, {} GiB, Linux {}; {} in all, started {}.\n",
            self.command,
            self.profile,
            m.cpu,
            m.cores,
            m.memory_gib,
            m.kernel,
            format_secs(self.total_seconds),
            self.started_at
        );
        for n in &self.notes {
            let _ = writeln!(s, "{n}\n");
        }
        for sc in &self.scenarios {
            let _ = writeln!(s, "### {}\n", sc.title);
            s.push_str(&sc.table.markdown());
            s.push('\n');
            for n in &sc.notes {
                let _ = writeln!(s, "- {n}");
            }
            if !sc.notes.is_empty() {
                s.push('\n');
            }
            for (caption, t) in &sc.more {
                let _ = writeln!(s, "{caption}\n");
                s.push_str(&t.markdown());
                s.push('\n');
            }
            if let Some(p) = &sc.plot {
                let _ = writeln!(s, "Plot: `{p}` (in the run's output directory).\n");
            }
        }
        s
    }

    /// Replaces the generated part of `doc` (between the markers) with this report.
    pub fn update_doc(&self, doc: &Path) -> anyhow::Result<()> {
        const BEGIN: &str = "<!-- BEGIN GENERATED: starling-bench writes this part -->";
        const END: &str = "<!-- END GENERATED -->";
        let old = std::fs::read_to_string(doc).unwrap_or_default();
        let generated = format!("{BEGIN}\n{}{END}", self.markdown());
        let new = match (old.find(BEGIN), old.find(END)) {
            (Some(b), Some(e)) if e > b => {
                format!("{}{}{}", &old[..b], generated, &old[e + END.len()..])
            }
            _ => format!("{old}\n{generated}\n"),
        };
        std::fs::write(doc, new)?;
        Ok(())
    }
}

pub fn format_secs(s: f64) -> String {
    if s < 120.0 {
        format!("{s:.0} s")
    } else {
        format!("{:.1} min", s / 60.0)
    }
}
