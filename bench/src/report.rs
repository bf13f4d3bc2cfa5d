//! What each mode measured, printable as text or JSON.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Percentiles of a latency histogram recorded in microseconds, in ms.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Latency {
    pub count: u64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Latency {
    pub fn of(h: &Histogram<u64>) -> Latency {
        let ms = |us: u64| us as f64 / 1000.0;
        Latency {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.50)),
            p95_ms: ms(h.value_at_quantile(0.95)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            max_ms: ms(h.max()),
        }
    }
}

impl fmt::Display for Latency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} samples)",
            self.p50_ms, self.p95_ms, self.p99_ms, self.max_ms, self.count
        )
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConnectReport {
    pub clients: usize,
    pub connected: usize,
    pub failures: usize,
    pub wall_ms: f64,
    pub welcome: Latency,
    pub confirm: Latency,
}

impl fmt::Display for ConnectReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "connect: {}/{} clients in {:.0} ms, {} failures",
            self.connected, self.clients, self.wall_ms, self.failures
        )?;
        writeln!(f, "  welcome: {}", self.welcome)?;
        write!(f, "  confirm: {}", self.confirm)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IdleReport {
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
    pub connections: usize,
    pub kib_per_connection: f64,
}

impl IdleReport {
    pub fn new(before: u64, after: u64, connections: usize) -> IdleReport {
        let per = after.saturating_sub(before) as f64 / connections.max(1) as f64;
        IdleReport {
            rss_before_kib: before,
            rss_after_kib: after,
            connections,
            kib_per_connection: per,
        }
    }
}

impl fmt::Display for IdleReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "idle: server RSS {} KiB -> {} KiB with {} connections: {:.2} KiB per connection",
            self.rss_before_kib, self.rss_after_kib, self.connections, self.kib_per_connection
        )
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BroadcastReport {
    pub clients: usize,
    pub broadcasts: usize,
    /// At the sender: from the broadcast request to its own copy arriving.
    pub rtt: Latency,
    /// Deliveries expected: broadcasts x clients.
    pub expected: u64,
    pub received: u64,
    pub missing: u64,
    pub duplicated: u64,
    pub wall_ms: f64,
}

impl fmt::Display for BroadcastReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "broadcast: {} broadcasts to {} clients in {:.0} ms",
            self.broadcasts, self.clients, self.wall_ms
        )?;
        writeln!(f, "  rtt: {}", self.rtt)?;
        write!(
            f,
            "  delivery: {} of {} received, {} missing, {} duplicated",
            self.received, self.expected, self.missing, self.duplicated
        )
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PerformReport {
    pub clients: usize,
    pub duration_ms: f64,
    pub requests: u64,
    pub per_second: f64,
    pub latency: Latency,
}

impl fmt::Display for PerformReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "perform: {} echo round trips in {:.0} ms from {} clients: {:.0}/s",
            self.requests, self.duration_ms, self.clients, self.per_second
        )?;
        write!(f, "  latency: {}", self.latency)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SuiteReport {
    pub target: String,
    pub clients: usize,
    pub connect: ConnectReport,
    pub idle: Option<IdleReport>,
    pub broadcast: BroadcastReport,
}

impl fmt::Display for SuiteReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} with {} clients", self.target, self.clients)?;
        writeln!(f, "{}", self.connect)?;
        if let Some(idle) = &self.idle {
            writeln!(f, "{idle}")?;
        }
        write!(f, "{}", self.broadcast)
    }
}

/// Resident memory of a process, from /proc.
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or_else(|| panic!("cannot read the memory of process {pid}"))
}

pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("histogram bounds")
}
