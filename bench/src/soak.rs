//! `ferrocable-bench soak`: an endurance run. A population of virtual users
//! comes and goes for `--duration` seconds (connect, subscribe to rooms,
//! perform, unsubscribe, leave; some read slowly, some drop the TCP
//! connection without a WebSocket close, some reset it), while broadcasts
//! arrive over HTTP `/_broadcast`. The server's process (RSS, open fds,
//! threads, from /proc) and its own gauges (`/metrics`: sessions, streams,
//! tokio tasks) are sampled all along, into a CSV and a PNG.
//!
//! The baseline is taken after a warm-up round of the same load, once the
//! server is idle again (allocator arenas, thread pools and buffers are
//! sized once; what the server keeps after that is what the run looks for).
//! After the load the run waits (up to `--settle`) for every value to come
//! back to the baseline within its tolerance, and exits non-zero when one
//! does not.

use clap::Args;
use futures_util::{SinkExt, StreamExt};
use plotters::prelude::*;
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

#[derive(Args)]
pub struct SoakArgs {
    /// WebSocket URL of the server
    #[arg(long, default_value = "ws://127.0.0.1:8080/cable")]
    url: String,
    /// The server's Prometheus endpoint (ferrocable_clients, _streams, _tokio_tasks)
    #[arg(long)]
    metrics_url: String,
    /// The HTTP broadcast endpoint (`/_broadcast`); none: no HTTP broadcasts
    #[arg(long)]
    broadcast_url: Option<String>,
    /// Bearer key for the broadcast endpoint
    #[arg(long)]
    broadcast_key: Option<String>,
    /// PID of the server process (RSS, fds, threads from /proc)
    #[arg(long)]
    pid: u32,
    /// Virtual users connected at once (each reconnects as a new session when it leaves)
    #[arg(long, default_value_t = 1000)]
    clients: usize,
    /// Seconds of load (after the warm-up)
    #[arg(long, default_value_t = 180)]
    duration: u64,
    /// Seconds of the warm-up round (the same load), after which the baseline is read
    #[arg(long, default_value_t = 20)]
    warmup: u64,
    /// Mean seconds a session lives (uniform between 0.2 and 1.8 times this)
    #[arg(long, default_value_t = 6.0)]
    lifetime: f64,
    /// Rooms (streams `soak:<n>`); room 0 is the hot one everybody joins
    #[arg(long, default_value_t = 200)]
    rooms: u32,
    /// HTTP broadcasts per second (rooms at random; every tenth to the hot room, 4 KiB)
    #[arg(long, default_value_t = 20)]
    broadcasts_per_second: u32,
    /// Longest wait, after the load, for the values to return to the baseline
    #[arg(long, default_value_t = 90)]
    settle: u64,
    /// Seconds to keep sampling once everything is back (the flat tail of the plot)
    #[arg(long, default_value_t = 10)]
    tail: u64,
    /// Milliseconds between samples
    #[arg(long, default_value_t = 1000)]
    interval_ms: u64,
    /// RSS tolerance above the baseline: percent ...
    #[arg(long, default_value_t = 10.0)]
    rss_tolerance_pct: f64,
    /// ... plus MiB
    #[arg(long, default_value_t = 8.0)]
    rss_tolerance_mib: f64,
    /// Open fds tolerated above the baseline
    #[arg(long, default_value_t = 4)]
    fd_tolerance: i64,
    /// Tokio tasks tolerated above the baseline
    #[arg(long, default_value_t = 4)]
    task_tolerance: i64,
    /// Local source addresses (127.0.0.2, .3, ...), so churn does not exhaust ephemeral ports
    #[arg(long, default_value_t = 16)]
    source_ips: u8,
    /// Output prefix: <out>.csv, <out>.png, <out>.json
    #[arg(long, default_value = "tmp/soak")]
    out: PathBuf,
    /// Label of the target, in the plot's title
    #[arg(long, default_value = "ferrocable")]
    target: String,
}

/// One reading of the server.
#[derive(Clone, Copy, Default)]
struct Sample {
    t: f64,
    phase: &'static str,
    rss_kib: i64,
    fds: i64,
    threads: i64,
    sessions: i64,
    streams: i64,
    tasks: i64,
    users: i64,
    sessions_opened: u64,
    errors: u64,
}

/// What the load generator did, counted.
#[derive(Default)]
struct Counts {
    live: AtomicU64,
    opened: AtomicU64,
    closed_clean: AtomicU64,
    dropped: AtomicU64,
    reset: AtomicU64,
    slow: AtomicU64,
    subscribes: AtomicU64,
    unsubscribes: AtomicU64,
    performs: AtomicU64,
    received: AtomicU64,
    broadcasts: AtomicU64,
    errors: AtomicU64,
}

fn proc_status(pid: u32, field: &str) -> i64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<i64>().ok())
        })
        .unwrap_or(-1)
}

fn fd_count(pid: u32) -> i64 {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(-1, |d| d.count() as i64)
}

/// `http://host:port/path` → (address, path).
fn http_target(url: &str) -> (String, String) {
    let rest = url.strip_prefix("http://").expect("an http:// URL");
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    (
        host.to_owned(),
        if path.is_empty() { "/" } else { path }.to_owned(),
    )
}

/// One HTTP/1.1 request on a fresh connection; the status and body.
async fn http(
    url: &str,
    method: &str,
    body: &str,
    key: Option<&str>,
) -> Result<(u16, String), String> {
    let (host, path) = http_target(url);
    let io = async {
        let mut s = tokio::net::TcpStream::connect(&host).await?;
        let auth = key
            .map(|k| format!("Authorization: Bearer {k}\r\n"))
            .unwrap_or_default();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: {host}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        s.write_all(head.as_bytes()).await?;
        s.write_all(body.as_bytes()).await?;
        let mut out = Vec::new();
        s.read_to_end(&mut out).await?;
        Ok::<_, std::io::Error>(out)
    };
    let out = tokio::time::timeout(Duration::from_secs(30), io)
        .await
        .map_err(|_| format!("{method} {url}: no answer in 30 s"))?
        .map_err(|e| format!("{method} {url}: {e}"))?;
    let text = String::from_utf8_lossy(&out);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("{method} {url}: no status line"))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// The value of a Prometheus sample (no labels expected), -1 when absent.
fn metric(text: &str, name: &str) -> i64 {
    text.lines()
        .find_map(|l| {
            let rest = l.strip_prefix(name)?;
            let rest = rest.strip_prefix(' ').or_else(|| {
                rest.strip_prefix('{')
                    .map(|r| r.split_once("} ").map_or("", |x| x.1))
            })?;
            rest.trim().parse::<f64>().ok()
        })
        .map_or(-1, |v| v as i64)
}

async fn sample(a: &SoakArgs, t0: Instant, phase: &'static str, c: &Counts) -> Sample {
    let text = http(&a.metrics_url, "GET", "", None)
        .await
        .map(|r| r.1)
        .unwrap_or_default();
    Sample {
        t: t0.elapsed().as_secs_f64(),
        phase,
        rss_kib: proc_status(a.pid, "VmRSS:"),
        fds: fd_count(a.pid),
        threads: proc_status(a.pid, "Threads:"),
        sessions: metric(&text, "ferrocable_clients"),
        streams: metric(&text, "ferrocable_streams"),
        tasks: metric(&text, "ferrocable_tokio_tasks"),
        users: c.live.load(Ordering::Relaxed) as i64,
        sessions_opened: c.opened.load(Ordering::Relaxed),
        errors: c.errors.load(Ordering::Relaxed),
    }
}

fn identifier(room: u32) -> String {
    format!(r#"{{"channel":"SoakChannel","room":"{room}"}}"#)
}

fn command(command: &str, room: u32, data: Option<String>) -> Message {
    let mut frame = serde_json::json!({"command": command, "identifier": identifier(room)});
    if let Some(d) = data {
        frame["data"] = d.into();
    }
    Message::text(frame.to_string())
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    /// Reads everything, performs, leaves with a close handshake.
    Normal,
    /// Joins the hot room and never reads; leaves by dropping the socket.
    Slow,
    /// Leaves without a WebSocket close (FIN only).
    Drop,
    /// Leaves with a TCP reset (SO_LINGER 0).
    Reset,
}

/// One session of a virtual user, from connect to leaving.
async fn session(
    a: &Arc<SoakArgs>,
    c: &Counts,
    source: Ipv4Addr,
    stop: &AtomicBool,
) -> Result<(), String> {
    let kind = match fastrand::u32(0..100) {
        0..70 => Kind::Normal,
        70..80 => Kind::Slow,
        80..90 => Kind::Drop,
        _ => Kind::Reset,
    };
    let life = Duration::from_secs_f64(a.lifetime * (0.2 + 1.6 * fastrand::f64()));
    let (mut ws, _) = crate::client::open(&a.url, source).await?;
    c.opened.fetch_add(1, Ordering::Relaxed);
    let until = Instant::now() + life;
    let mut rooms = vec![0u32];
    for _ in 0..fastrand::u32(0..3) {
        rooms.push(fastrand::u32(1..a.rooms.max(2)));
    }
    rooms.dedup();
    for &r in &rooms {
        ws.send(command("subscribe", r, None))
            .await
            .map_err(|e| e.to_string())?;
        c.subscribes.fetch_add(1, Ordering::Relaxed);
    }
    if kind == Kind::Slow {
        c.slow.fetch_add(1, Ordering::Relaxed);
        // Never reads: what the server sends piles up in the socket buffers
        // (and the server's write budget, past which it closes the socket).
        while Instant::now() < until && !stop.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        drop(ws);
        return Ok(());
    }
    // Something every ~1/4 of the life: speak, echo, or change rooms.
    let mut next = Instant::now() + life / 4;
    loop {
        let now = Instant::now();
        if now >= until || stop.load(Ordering::Relaxed) {
            break;
        }
        let wake = next.min(until).min(now + Duration::from_millis(500));
        tokio::select! {
            m = ws.next() => match m {
                Some(Ok(_)) => { c.received.fetch_add(1, Ordering::Relaxed); }
                Some(Err(e)) => return Err(e.to_string()),
                None => return Err("closed by the server".into()),
            },
            _ = tokio::time::sleep_until(wake.into()) => {
                if Instant::now() >= next {
                    next = Instant::now() + life / 4;
                    let room = rooms[fastrand::usize(0..rooms.len())];
                    let frame = match fastrand::u32(0..4) {
                        0 => command("message", room, Some(r#"{"action":"speak","text":"hello"}"#.into())),
                        1 => command("message", room, Some(r#"{"action":"echo","text":"ping"}"#.into())),
                        2 if rooms.len() > 1 => {
                            let gone = rooms.pop().expect("a room");
                            c.unsubscribes.fetch_add(1, Ordering::Relaxed);
                            command("unsubscribe", gone, None)
                        }
                        _ => {
                            let r = fastrand::u32(1..a.rooms.max(2));
                            if rooms.contains(&r) { continue; }
                            rooms.push(r);
                            c.subscribes.fetch_add(1, Ordering::Relaxed);
                            command("subscribe", r, None)
                        }
                    };
                    if frame.to_text().is_ok_and(|t| t.contains("\"message\"")) {
                        c.performs.fetch_add(1, Ordering::Relaxed);
                    }
                    ws.send(frame).await.map_err(|e| e.to_string())?;
                }
            }
        }
    }
    match kind {
        Kind::Normal => {
            let _ = ws.close(None).await;
            // The server's close frame (or the end), read within a bound.
            let _ = tokio::time::timeout(Duration::from_secs(10), async {
                while let Some(Ok(_)) = ws.next().await {}
            })
            .await;
            c.closed_clean.fetch_add(1, Ordering::Relaxed);
        }
        Kind::Drop => {
            drop(ws);
            c.dropped.fetch_add(1, Ordering::Relaxed);
        }
        Kind::Reset => {
            let tcp = ws.into_inner();
            #[allow(deprecated)] // set_linger: the reset is the point here
            let _ = tcp.set_linger(Some(Duration::ZERO));
            drop(tcp);
            c.reset.fetch_add(1, Ordering::Relaxed);
        }
        Kind::Slow => unreachable!(),
    }
    Ok(())
}

/// A virtual user: sessions one after another until the phase stops.
async fn user(a: Arc<SoakArgs>, c: Arc<Counts>, n: usize, stop: Arc<AtomicBool>) {
    let source = Ipv4Addr::new(127, 0, 0, 2 + (n % a.source_ips.max(1) as usize) as u8);
    // Spread the first connects over a second or two.
    tokio::time::sleep(Duration::from_millis(fastrand::u64(0..2000))).await;
    while !stop.load(Ordering::Relaxed) {
        c.live.fetch_add(1, Ordering::Relaxed);
        let r = session(&a, &c, source, &stop).await;
        c.live.fetch_sub(1, Ordering::Relaxed);
        if let Err(e) = r {
            if c.errors.fetch_add(1, Ordering::Relaxed) < 5 {
                eprintln!("soak: session error: {e}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

async fn broadcaster(a: Arc<SoakArgs>, c: Arc<Counts>, stop: Arc<AtomicBool>) {
    let Some(url) = a.broadcast_url.clone() else {
        return;
    };
    let period = Duration::from_secs_f64(1.0 / f64::from(a.broadcasts_per_second.max(1)));
    let hot = "x".repeat(4096);
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let (room, text) = if n.is_multiple_of(10) {
            (0, hot.as_str())
        } else {
            (fastrand::u32(1..a.rooms.max(2)), "news")
        };
        let data = serde_json::json!({"text": text, "n": n}).to_string();
        let body = serde_json::json!({"stream": format!("soak:{room}"), "data": data}).to_string();
        match http(&url, "POST", &body, a.broadcast_key.as_deref()).await {
            Ok((201, _)) => {
                c.broadcasts.fetch_add(1, Ordering::Relaxed);
            }
            Ok((status, body)) => {
                if c.errors.fetch_add(1, Ordering::Relaxed) < 5 {
                    eprintln!("soak: broadcast answered {status}: {body}");
                }
            }
            Err(e) => {
                if c.errors.fetch_add(1, Ordering::Relaxed) < 5 {
                    eprintln!("soak: broadcast: {e}");
                }
            }
        }
        tokio::time::sleep(period).await;
    }
}

/// Runs the load for `seconds`, then stops every user and waits for them.
async fn load(a: &Arc<SoakArgs>, c: &Arc<Counts>, seconds: u64) {
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for n in 0..a.clients {
        tasks.push(tokio::spawn(user(a.clone(), c.clone(), n, stop.clone())));
    }
    tasks.push(tokio::spawn(broadcaster(
        a.clone(),
        c.clone(),
        stop.clone(),
    )));
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
}

/// The baseline: the median of `n` samples, each value on its own.
fn median(samples: &[Sample]) -> Sample {
    let pick = |f: fn(&Sample) -> i64| {
        let mut v: Vec<i64> = samples.iter().map(f).collect();
        v.sort_unstable();
        v[v.len() / 2]
    };
    Sample {
        rss_kib: pick(|s| s.rss_kib),
        fds: pick(|s| s.fds),
        threads: pick(|s| s.threads),
        sessions: pick(|s| s.sessions),
        streams: pick(|s| s.streams),
        tasks: pick(|s| s.tasks),
        ..samples[0]
    }
}

/// What is still away from the baseline (empty: all back).
fn away(a: &SoakArgs, base: &Sample, s: &Sample) -> Vec<String> {
    let mut out = Vec::new();
    let rss_limit =
        base.rss_kib as f64 * (1.0 + a.rss_tolerance_pct / 100.0) + a.rss_tolerance_mib * 1024.0;
    if s.rss_kib as f64 > rss_limit {
        out.push(format!("RSS {} KiB > {:.0} KiB", s.rss_kib, rss_limit));
    }
    if s.fds > base.fds + a.fd_tolerance {
        out.push(format!("fds {} > {} + {}", s.fds, base.fds, a.fd_tolerance));
    }
    if s.sessions != base.sessions {
        out.push(format!("sessions {} != {}", s.sessions, base.sessions));
    }
    if s.streams != base.streams {
        out.push(format!("streams {} != {}", s.streams, base.streams));
    }
    if s.tasks > base.tasks + a.task_tolerance {
        out.push(format!(
            "tokio tasks {} > {} + {}",
            s.tasks, base.tasks, a.task_tolerance
        ));
    }
    out
}

struct Recorder {
    samples: Mutex<Vec<Sample>>,
    phase: Mutex<&'static str>,
}

pub async fn run(a: SoakArgs) -> bool {
    let a = Arc::new(a);
    let c = Arc::new(Counts::default());
    let t0 = Instant::now();
    let rec = Arc::new(Recorder {
        samples: Mutex::new(Vec::new()),
        phase: Mutex::new("start"),
    });
    let probe = sample(&a, t0, "start", &c).await;
    assert!(probe.rss_kib > 0, "cannot read /proc/{}/status", a.pid);
    assert!(
        probe.sessions >= 0,
        "no ferrocable_clients at {}",
        a.metrics_url
    );
    if probe.tasks < 0 {
        eprintln!(
            "soak: no ferrocable_tokio_tasks at {} (tasks not checked)",
            a.metrics_url
        );
    }
    // The sampler, with a progress line every 10 samples.
    let sampler = {
        let (a, c, rec) = (a.clone(), c.clone(), rec.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(a.interval_ms));
            let mut n = 0u64;
            loop {
                tick.tick().await;
                let phase = *rec.phase.lock().unwrap();
                let s = sample(&a, t0, phase, &c).await;
                if n.is_multiple_of(10) {
                    eprintln!(
                        "soak: {:>6.0}s {:<8} users {:>5} sessions {:>5} streams {:>4} tasks {:>6} RSS {:>7.1} MiB fds {:>5} threads {:>3} | opened {} performs {} broadcasts {} received {} errors {}",
                        s.t,
                        s.phase,
                        s.users,
                        s.sessions,
                        s.streams,
                        s.tasks,
                        s.rss_kib as f64 / 1024.0,
                        s.fds,
                        s.threads,
                        s.sessions_opened,
                        c.performs.load(Ordering::Relaxed),
                        c.broadcasts.load(Ordering::Relaxed),
                        c.received.load(Ordering::Relaxed),
                        s.errors
                    );
                }
                n += 1;
                rec.samples.lock().unwrap().push(s);
            }
        })
    };
    let set_phase = |p: &'static str| *rec.phase.lock().unwrap() = p;
    let cold = probe;

    // Warm-up, then idle: the baseline.
    set_phase("warmup");
    eprintln!("soak: warm-up, {} users for {} s", a.clients, a.warmup);
    load(&a, &c, a.warmup).await;
    set_phase("idle");
    let idle_deadline = Instant::now() + Duration::from_secs(a.settle);
    loop {
        let s = sample(&a, t0, "idle", &c).await;
        if (s.sessions == cold.sessions && s.streams == cold.streams)
            || Instant::now() > idle_deadline
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut base_samples = Vec::new();
    for _ in 0..5 {
        base_samples.push(sample(&a, t0, "idle", &c).await);
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    let base = median(&base_samples);
    eprintln!(
        "soak: baseline (after warm-up): RSS {:.1} MiB (cold {:.1}), fds {} (cold {}), sessions {}, streams {}, tasks {} (cold {}), threads {}",
        base.rss_kib as f64 / 1024.0,
        cold.rss_kib as f64 / 1024.0,
        base.fds,
        cold.fds,
        base.sessions,
        base.streams,
        base.tasks,
        cold.tasks,
        base.threads
    );
    let opened_before = c.opened.load(Ordering::Relaxed);

    // The load.
    set_phase("load");
    let load_start = t0.elapsed().as_secs_f64();
    eprintln!("soak: load, {} users for {} s", a.clients, a.duration);
    load(&a, &c, a.duration).await;
    let load_end = t0.elapsed().as_secs_f64();

    // After: back to the baseline?
    set_phase("after");
    let deadline = Instant::now() + Duration::from_secs(a.settle);
    let mut back_at = None;
    let mut last = Vec::new();
    while Instant::now() < deadline {
        let s = sample(&a, t0, "after", &c).await;
        last = away(&a, &base, &s);
        if last.is_empty() {
            back_at = Some(s.t - load_end);
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    if back_at.is_some() {
        // The flat tail: it must stay back.
        let tail_end = Instant::now() + Duration::from_secs(a.tail);
        while Instant::now() < tail_end && last.is_empty() {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let s = sample(&a, t0, "after", &c).await;
            last = away(&a, &base, &s);
        }
    }
    tokio::time::sleep(Duration::from_millis(a.interval_ms)).await;
    sampler.abort();
    let end = sample(&a, t0, "after", &c).await;
    let samples = rec.samples.lock().unwrap().clone();
    let peak = |f: fn(&Sample) -> i64| samples.iter().map(f).max().unwrap_or(0);
    let ok = last.is_empty();
    let load_counts = |x: &AtomicU64| x.load(Ordering::Relaxed);
    let summary = serde_json::json!({
        "target": a.target,
        "clients": a.clients,
        "duration_s": a.duration,
        "warmup_s": a.warmup,
        "mean_lifetime_s": a.lifetime,
        "sessions_opened": load_counts(&c.opened),
        "sessions_opened_in_load": load_counts(&c.opened) - opened_before,
        "closed_clean": load_counts(&c.closed_clean),
        "dropped_without_close": load_counts(&c.dropped),
        "reset": load_counts(&c.reset),
        "slow_readers": load_counts(&c.slow),
        "subscribes": load_counts(&c.subscribes),
        "unsubscribes": load_counts(&c.unsubscribes),
        "performs": load_counts(&c.performs),
        "http_broadcasts": load_counts(&c.broadcasts),
        "messages_received": load_counts(&c.received),
        "errors": load_counts(&c.errors),
        "cold": {"rss_kib": cold.rss_kib, "fds": cold.fds, "tasks": cold.tasks, "threads": cold.threads},
        "baseline": {"rss_kib": base.rss_kib, "fds": base.fds, "sessions": base.sessions, "streams": base.streams, "tasks": base.tasks, "threads": base.threads},
        "peak": {"rss_kib": peak(|s| s.rss_kib), "fds": peak(|s| s.fds), "sessions": peak(|s| s.sessions), "streams": peak(|s| s.streams), "tasks": peak(|s| s.tasks), "threads": peak(|s| s.threads)},
        "end": {"rss_kib": end.rss_kib, "fds": end.fds, "sessions": end.sessions, "streams": end.streams, "tasks": end.tasks, "threads": end.threads},
        "tolerance": {"rss_pct": a.rss_tolerance_pct, "rss_mib": a.rss_tolerance_mib, "fds": a.fd_tolerance, "tasks": a.task_tolerance, "sessions": 0, "streams": 0},
        "back_to_baseline_after_s": back_at,
        "still_away": last,
        "passed": ok,
    });
    write_outputs(&a, &samples, (load_start, load_end), &base, &summary);
    println!("{}", serde_json::to_string_pretty(&summary).expect("JSON"));
    if ok {
        eprintln!(
            "soak: PASSED: back to the baseline {:.1} s after the load",
            back_at.unwrap_or(0.0)
        );
    } else {
        eprintln!(
            "soak: FAILED: not back to the baseline within {} s: {}",
            a.settle,
            last.join("; ")
        );
    }
    ok
}

fn write_outputs(
    a: &SoakArgs,
    samples: &[Sample],
    load: (f64, f64),
    base: &Sample,
    summary: &serde_json::Value,
) {
    if let Some(dir) = a.out.parent() {
        std::fs::create_dir_all(dir).expect("create the output directory");
    }
    let path = |ext: &str| {
        let mut p = a.out.clone().into_os_string();
        p.push(ext);
        PathBuf::from(p)
    };
    let mut csv = String::from(
        "t_s,phase,rss_kib,fds,threads,sessions,streams,tokio_tasks,users,sessions_opened,errors\n",
    );
    for s in samples {
        let _ = writeln!(
            csv,
            "{:.1},{},{},{},{},{},{},{},{},{},{}",
            s.t,
            s.phase,
            s.rss_kib,
            s.fds,
            s.threads,
            s.sessions,
            s.streams,
            s.tasks,
            s.users,
            s.sessions_opened,
            s.errors
        );
    }
    std::fs::write(path(".csv"), csv).expect("write the CSV");
    let mut f = std::fs::File::create(path(".json")).expect("write the summary");
    let _ = writeln!(
        f,
        "{}",
        serde_json::to_string_pretty(summary).expect("JSON")
    );
    if let Err(e) = plot(&path(".png"), a, samples, load, base) {
        eprintln!("soak: plot failed: {e}");
    }
    eprintln!("soak: wrote {}.csv, .json, .png", a.out.display());
}

type Panel = (
    &'static str,
    &'static str,
    fn(&Sample) -> f64,
    fn(&Sample) -> f64,
);

fn plot(
    out: &PathBuf,
    a: &SoakArgs,
    samples: &[Sample],
    load: (f64, f64),
    base: &Sample,
) -> Result<(), Box<dyn std::error::Error>> {
    let panels: [Panel; 4] = [
        (
            "Resident memory (RSS)",
            "MiB",
            |s| s.rss_kib as f64 / 1024.0,
            |b| b.rss_kib as f64 / 1024.0,
        ),
        (
            "Open file descriptors",
            "fds",
            |s| s.fds as f64,
            |b| b.fds as f64,
        ),
        (
            "Sessions (ferrocable_clients) and streams",
            "count",
            |s| s.sessions as f64,
            |b| b.sessions as f64,
        ),
        (
            "Tokio tasks (ferrocable_tokio_tasks)",
            "tasks",
            |s| s.tasks as f64,
            |b| b.tasks as f64,
        ),
    ];
    let root = BitMapBackend::new(out, (1400, 900)).into_drawing_area();
    root.fill(&WHITE)?;
    let (title, body) = root.split_vertically(40);
    title.draw_text(
        &format!(
            "Soak: {} — {} users, {} s load (shaded), mean session {:.0} s; dashed: baseline after warm-up",
            a.target, a.clients, a.duration, a.lifetime
        ),
        &("sans-serif", 22).into_text_style(&title),
        (20, 10),
    )?;
    let areas = body.split_evenly((2, 2));
    let max_t = samples.last().map_or(1.0, |s| s.t);
    for (area, (name, unit, value, basef)) in areas.iter().zip(panels) {
        let max_y = samples.iter().map(value).fold(1.0, f64::max) * 1.1;
        let mut chart = ChartBuilder::on(area)
            .caption(name, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(35)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..max_t, 0f64..max_y)?;
        chart
            .configure_mesh()
            .x_desc("seconds")
            .y_desc(unit)
            .draw()?;
        chart.draw_series(std::iter::once(Rectangle::new(
            [(load.0, 0.0), (load.1, max_y)],
            RGBColor(255, 200, 120).mix(0.3).filled(),
        )))?;
        chart.draw_series(LineSeries::new(
            samples.iter().map(|s| (s.t, value(s))),
            RGBColor(30, 100, 200).stroke_width(2),
        ))?;
        if name.starts_with("Sessions") {
            chart
                .draw_series(LineSeries::new(
                    samples.iter().map(|s| (s.t, s.streams as f64)),
                    RGBColor(40, 150, 60).stroke_width(2),
                ))?
                .label("streams")
                .legend(|(x, y)| {
                    PathElement::new(
                        vec![(x, y), (x + 20, y)],
                        RGBColor(40, 150, 60).stroke_width(2),
                    )
                });
            chart
                .draw_series(LineSeries::new(
                    samples.iter().map(|s| (s.t, s.sessions as f64)),
                    RGBColor(30, 100, 200).stroke_width(2),
                ))?
                .label("sessions")
                .legend(|(x, y)| {
                    PathElement::new(
                        vec![(x, y), (x + 20, y)],
                        RGBColor(30, 100, 200).stroke_width(2),
                    )
                });
            chart
                .configure_series_labels()
                .border_style(BLACK)
                .background_style(WHITE.mix(0.9))
                .draw()?;
        }
        let b = basef(base);
        chart.draw_series(DashedLineSeries::new(
            vec![(0.0, b), (max_t, b)],
            6,
            4,
            RGBColor(178, 34, 34).stroke_width(2),
        ))?;
    }
    root.present()?;
    Ok(())
}
