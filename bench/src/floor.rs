//! Fan-out against the machine's floor (`floor`, `fanout`, and the hidden
//! `drain` they start).
//!
//! The floor: one writer thread writes the same WebSocket data frame to N
//! loopback TCP sockets, one `write(2)` per socket per round, with one frame
//! or several frames in each write (the floor a server that coalesces its
//! writes can reach). Ferrocable: the same N sockets are WebSocket clients
//! subscribed to one stream, and broadcasts arrive by HTTP. In both, another
//! process (`drain`) reads every socket and counts the data frames, so the
//! measured process only writes; CPU time is read from /proc for the
//! measured process (the floor's writer thread; the whole server process).
//!
//! Two figures each: **deliveries per CPU-second**, sustained (many rounds,
//! the kernel's socket buffers absorbing them), and the **round time** of a
//! single broadcast: from the write of the first frame (the HTTP request)
//! until the drainer has the frame on every socket.

use serde::Serialize;
use std::cell::{Cell, RefCell};
use std::fmt;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Data frames are told from welcomes, confirmations and pings by their
/// payload length: the benchmark's payload is padded past this.
const MIN_DATA_LEN: usize = 120;

#[derive(clap::Args)]
pub struct FloorArgs {
    /// Sockets
    #[arg(long, default_value_t = 10000)]
    clients: usize,
    /// Frames per write in the coalesced runs (1 is always run too)
    #[arg(long, default_value_t = 5)]
    frames_per_write: usize,
    /// Deliveries per sustained run (rounds = this / clients / frames per write)
    #[arg(long, default_value_t = 2_000_000)]
    deliveries: usize,
    /// Single rounds timed
    #[arg(long, default_value_t = 20)]
    rounds: usize,
    /// Bytes of padding in the payload
    #[arg(long, default_value_t = 100)]
    padding: usize,
    /// Local source addresses (127.0.0.2, ...)
    #[arg(long, default_value_t = 16)]
    source_ips: u8,
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct FanoutArgs {
    /// WebSocket URL of the server (with `?jid=` for the fast lane)
    #[arg(long)]
    url: String,
    /// Channel identifier the clients subscribe with
    #[arg(long, default_value = r#"{"channel":"$pubsub","stream_name":"all"}"#)]
    identifier: String,
    /// The stream broadcasts go to
    #[arg(long, default_value = "all")]
    stream: String,
    /// HTTP broadcast URL (http://host:port/path)
    #[arg(long)]
    broadcast_url: String,
    /// PID of the server process (its CPU time is measured)
    #[arg(long)]
    pid: u32,
    #[arg(long, default_value_t = 10000)]
    clients: usize,
    /// Deliveries per sustained run (broadcasts = this / clients)
    #[arg(long, default_value_t = 2_000_000)]
    deliveries: usize,
    /// Broadcasts in flight in the sustained run (HTTP requests pipelined)
    #[arg(long, default_value_t = 10)]
    in_flight: usize,
    /// Single broadcasts timed
    #[arg(long, default_value_t = 20)]
    rounds: usize,
    #[arg(long, default_value_t = 100)]
    padding: usize,
    #[arg(long, default_value_t = 16)]
    source_ips: u8,
    #[arg(long)]
    json: bool,
}

#[derive(clap::Args)]
pub struct DrainArgs {
    #[arg(long)]
    addr: SocketAddr,
    #[arg(long)]
    clients: usize,
    /// WebSocket URL path and query to upgrade with, and the identifier to
    /// subscribe with (raw TCP when absent)
    #[arg(long)]
    ws_path: Option<String>,
    #[arg(long, default_value = "")]
    identifier: String,
    #[arg(long, default_value_t = 16)]
    source_ips: u8,
}

#[derive(Serialize, Debug, Clone)]
pub struct Sustained {
    pub frames_per_write: usize,
    pub deliveries: u64,
    pub cpu_seconds: f64,
    pub wall_seconds: f64,
    pub deliveries_per_cpu_second: f64,
    pub deliveries_per_second: f64,
}

#[derive(Serialize, Debug, Clone)]
pub struct Rounds {
    pub p50_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
    /// CPU time of the measured process per round
    pub cpu_ms: f64,
}

#[derive(Serialize, Debug)]
pub struct FloorReport {
    pub clients: usize,
    pub frame_bytes: usize,
    pub sustained: Vec<Sustained>,
    pub round: Rounds,
}

#[derive(Serialize, Debug)]
pub struct FanoutReport {
    pub clients: usize,
    pub sustained: Sustained,
    pub round: Rounds,
}

impl fmt::Display for Sustained {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} deliveries ({} frame(s) per write): {:.0}/CPU-s ({:.2} CPU-s), {:.0}/s ({:.2} s)",
            self.deliveries,
            self.frames_per_write,
            self.deliveries_per_cpu_second,
            self.cpu_seconds,
            self.deliveries_per_second,
            self.wall_seconds
        )
    }
}

impl fmt::Display for Rounds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "single round: p50 {:.2} ms (min {:.2}, max {:.2}), {:.2} CPU-ms per round",
            self.p50_ms, self.min_ms, self.max_ms, self.cpu_ms
        )
    }
}

impl fmt::Display for FloorReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "floor, {} sockets, {}-byte frame:",
            self.clients, self.frame_bytes
        )?;
        for s in &self.sustained {
            writeln!(f, "  {s}")?;
        }
        write!(f, "  {}", self.round)
    }
}

impl fmt::Display for FanoutReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "ferrocable, {} subscribers:", self.clients)?;
        writeln!(f, "  {}", self.sustained)?;
        write!(f, "  {}", self.round)
    }
}

/// The payload every broadcast carries (`padding` bytes of it padding).
fn payload(padding: usize) -> String {
    format!(r#"{{"n":1,"pad":"{}"}}"#, "x".repeat(padding))
}

/// The data frame Ferrocable sends for `payload` on `identifier`, as a
/// WebSocket frame (server to client: unmasked).
fn data_frame(identifier: &str, payload: &str) -> Vec<u8> {
    let text = format!(
        r#"{{"identifier":{},"message":{}}}"#,
        serde_json::to_string(identifier).expect("a string serializes"),
        payload
    );
    let mut frame = vec![0x81];
    let len = text.len();
    if len < 126 {
        frame.push(len as u8);
    } else {
        assert!(len <= u16::MAX as usize);
        frame.push(126);
        frame.extend_from_slice(&(len as u16).to_be_bytes());
    }
    frame.extend_from_slice(text.as_bytes());
    frame
}

/// CPU time of this thread, from the scheduler (nanoseconds).
fn thread_cpu() -> Duration {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").expect("schedstat");
    let ns: u64 = s.split_whitespace().next().unwrap().parse().unwrap();
    Duration::from_nanos(ns)
}

/// CPU time (user + system) of process `pid`, all threads.
pub fn process_cpu(pid: u32) -> Duration {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|_| panic!("cannot read /proc/{pid}/stat"));
    // Fields after the command name (which may hold spaces): utime is the
    // 14th field of the line, stime the 15th.
    let rest = &s[s.rfind(')').expect("stat format") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // USER_HZ is 100 on Linux.
    Duration::from_millis(ticks * 10)
}

/// The drainer, as a child process: commands on its stdin, answers on its stdout.
struct Drainer {
    child: Child,
    to: ChildStdin,
    from: BufReader<ChildStdout>,
}

impl Drainer {
    fn start(args: &[String]) -> Drainer {
        let mut child = Command::new(std::env::current_exe().expect("own path"))
            .arg("drain")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the drainer");
        let to = child.stdin.take().unwrap();
        let from = BufReader::new(child.stdout.take().unwrap());
        Drainer { child, to, from }
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.from.read_line(&mut line).expect("drainer output");
        assert!(!line.is_empty(), "the drainer exited");
        line.trim().to_owned()
    }

    /// Waits until the drainer has counted `total` data frames since it started.
    fn expect(&mut self, total: u64) {
        writeln!(self.to, "{total}").expect("drainer input");
        self.to.flush().unwrap();
    }

    fn wait(&mut self) {
        let line = self.line();
        assert!(line.starts_with("done"), "drainer said {line}");
    }
}

impl Drop for Drainer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rounds_report(mut times: Vec<Duration>, cpu: Duration) -> Rounds {
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    Rounds {
        p50_ms: ms(times[times.len() / 2]),
        min_ms: ms(times[0]),
        max_ms: ms(*times.last().unwrap()),
        cpu_ms: ms(cpu) / times.len() as f64,
    }
}

fn sustained(frames_per_write: usize, deliveries: u64, cpu: Duration, wall: Duration) -> Sustained {
    Sustained {
        frames_per_write,
        deliveries,
        cpu_seconds: cpu.as_secs_f64(),
        wall_seconds: wall.as_secs_f64(),
        deliveries_per_cpu_second: deliveries as f64 / cpu.as_secs_f64(),
        deliveries_per_second: deliveries as f64 / wall.as_secs_f64(),
    }
}

pub fn floor(a: &FloorArgs) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().unwrap();
    let mut drainer = Drainer::start(&[
        format!("--addr={addr}"),
        format!("--clients={}", a.clients),
        format!("--source-ips={}", a.source_ips),
    ]);
    let mut sockets = Vec::with_capacity(a.clients);
    while sockets.len() < a.clients {
        let (s, _) = listener.accept().expect("accept");
        s.set_nodelay(true).unwrap();
        sockets.push(s);
    }
    let ready = drainer.line();
    assert_eq!(ready, "ready", "drainer: {ready}");
    let frame = data_frame(
        r#"{"channel":"$pubsub","stream_name":"all"}"#,
        &payload(a.padding),
    );
    let mut counted = 0u64;
    let mut results = Vec::new();
    let mut kinds = vec![1];
    if a.frames_per_write > 1 {
        kinds.push(a.frames_per_write);
    }
    for k in kinds {
        let buf: Vec<u8> = frame.repeat(k);
        let rounds = (a.deliveries / a.clients / k).max(1);
        let total = (rounds * k * a.clients) as u64;
        counted += total;
        drainer.expect(counted);
        let (cpu0, t0) = (thread_cpu(), Instant::now());
        for _ in 0..rounds {
            for s in &mut sockets {
                s.write_all(&buf).expect("write");
            }
        }
        let cpu = thread_cpu() - cpu0;
        drainer.wait();
        results.push(sustained(k, total, cpu, t0.elapsed()));
    }
    let mut times = Vec::new();
    let mut cpu = Duration::ZERO;
    for _ in 0..a.rounds {
        counted += a.clients as u64;
        drainer.expect(counted);
        std::thread::sleep(Duration::from_millis(50)); // the drainer is waiting
        let (cpu0, t0) = (thread_cpu(), Instant::now());
        for s in &mut sockets {
            s.write_all(&frame).expect("write");
        }
        cpu += thread_cpu() - cpu0;
        drainer.wait();
        times.push(t0.elapsed());
    }
    let report = FloorReport {
        clients: a.clients,
        frame_bytes: frame.len(),
        sustained: results,
        round: rounds_report(times, cpu),
    };
    crate::emit(a.json, &report);
}

/// A minimal HTTP/1.1 keep-alive client for the broadcast endpoint: requests
/// are written by the caller, answers read by a thread of their own.
struct Broadcaster {
    stream: TcpStream,
    request: Vec<u8>,
    answered: std::sync::mpsc::Receiver<()>,
}

impl Broadcaster {
    fn new(url: &str, stream_name: &str, data: &str) -> Broadcaster {
        let rest = url.strip_prefix("http://").expect("http:// broadcast URL");
        let (hostport, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let path = if path.is_empty() { "/" } else { path };
        let stream = TcpStream::connect(hostport).expect("connect to the broadcast endpoint");
        stream.set_nodelay(true).unwrap();
        let body = serde_json::json!({ "stream": stream_name, "data": data }).to_string();
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: {hostport}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes();
        let (tx, answered) = std::sync::mpsc::channel();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        std::thread::spawn(move || {
            loop {
                // Status line, headers, and a body of Content-Length bytes.
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    return;
                }
                assert!(
                    line.starts_with("HTTP/1.1 201"),
                    "broadcast refused: {line}"
                );
                let mut len = 0usize;
                loop {
                    let mut h = String::new();
                    reader.read_line(&mut h).unwrap();
                    let h = h.trim();
                    if h.is_empty() {
                        break;
                    }
                    if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap();
                    }
                }
                let mut body = vec![0; len];
                reader.read_exact(&mut body).unwrap();
                if tx.send(()).is_err() {
                    return;
                }
            }
        });
        Broadcaster {
            stream,
            request,
            answered,
        }
    }

    fn send(&mut self) {
        self.stream
            .write_all(&self.request)
            .expect("broadcast request");
    }

    fn answer(&self) {
        self.answered
            .recv_timeout(Duration::from_secs(60))
            .expect("broadcast answered");
    }
}

pub fn fanout(a: &FanoutArgs) {
    let rest = a.url.strip_prefix("ws://").expect("ws:// URL");
    let (hostport, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let addr: SocketAddr = hostport.parse().expect("ws://IP:port/...");
    let mut drainer = Drainer::start(&[
        format!("--addr={addr}"),
        format!("--clients={}", a.clients),
        format!("--source-ips={}", a.source_ips),
        format!("--ws-path={path}"),
        format!("--identifier={}", a.identifier),
    ]);
    let ready = drainer.line();
    assert_eq!(ready, "ready", "drainer: {ready}");
    let data = payload(a.padding);
    let mut broadcaster = Broadcaster::new(&a.broadcast_url, &a.stream, &data);
    // Let the connect avalanche's work settle before measuring.
    std::thread::sleep(Duration::from_secs(2));
    let broadcasts = (a.deliveries / a.clients).max(1);
    let total = (broadcasts * a.clients) as u64;
    let mut counted = total;
    drainer.expect(counted);
    let (cpu0, t0) = (process_cpu(a.pid), Instant::now());
    let mut in_flight = 0;
    for _ in 0..broadcasts {
        if in_flight == a.in_flight {
            broadcaster.answer();
            in_flight -= 1;
        }
        broadcaster.send();
        in_flight += 1;
    }
    drainer.wait();
    let wall = t0.elapsed();
    let cpu = process_cpu(a.pid) - cpu0;
    for _ in 0..in_flight {
        broadcaster.answer();
    }
    let sustained = sustained(1, total, cpu, wall);
    let mut times = Vec::new();
    let cpu0 = process_cpu(a.pid);
    for _ in 0..a.rounds {
        counted += a.clients as u64;
        drainer.expect(counted);
        std::thread::sleep(Duration::from_millis(50));
        let t0 = Instant::now();
        broadcaster.send();
        drainer.wait();
        times.push(t0.elapsed());
        broadcaster.answer();
    }
    // Includes the sleeps' idle server (pings are every few seconds: noise).
    let cpu = process_cpu(a.pid) - cpu0;
    let report = FanoutReport {
        clients: a.clients,
        sustained,
        round: rounds_report(times, cpu),
    };
    crate::emit(a.json, &report);
}

/// Per-socket frame counting state (server frames: unmasked).
#[derive(Default)]
struct Parser {
    header: [u8; 14],
    header_len: usize,
    /// Payload bytes still to skip in the current frame.
    skip: u64,
    /// Whether the current frame, once skipped, is a data frame.
    data: bool,
}

impl Parser {
    /// Consumes `buf`; returns how many data frames ended in it.
    fn feed(&mut self, buf: &[u8]) -> u64 {
        let mut frames = 0;
        let mut i = 0;
        while i < buf.len() {
            if self.skip > 0 {
                let take = (self.skip as usize).min(buf.len() - i);
                self.skip -= take as u64;
                i += take;
                if self.skip == 0 && self.data {
                    frames += 1;
                }
                continue;
            }
            self.header[self.header_len] = buf[i];
            self.header_len += 1;
            i += 1;
            if let Some((needed, len)) = header(&self.header[..self.header_len])
                && self.header_len == needed
            {
                self.header_len = 0;
                self.skip = len;
                self.data = len as usize >= MIN_DATA_LEN;
                if len == 0 && self.data {
                    frames += 1;
                }
            }
        }
        frames
    }
}

/// The header's full length and the payload length, once known.
fn header(h: &[u8]) -> Option<(usize, u64)> {
    if h.len() < 2 {
        return None;
    }
    let mask = if h[1] & 0x80 != 0 { 4 } else { 0 };
    match h[1] & 0x7f {
        126 => {
            if h.len() < 4 {
                return None;
            }
            Some((4 + mask, u16::from_be_bytes([h[2], h[3]]) as u64))
        }
        127 => {
            if h.len() < 10 {
                return None;
            }
            Some((10 + mask, u64::from_be_bytes(h[2..10].try_into().unwrap())))
        }
        n => Some((2 + mask, n as u64)),
    }
}

/// The drainer: connects (and, for WebSocket, upgrades and subscribes)
/// every socket, says `ready`, then reads everything, counting data frames;
/// for each number it reads on stdin it answers `done` once that many
/// have arrived in all.
pub fn drain(a: &DrainArgs) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, drain_all(a));
}

async fn drain_all(a: &DrainArgs) {
    let count = Rc::new(Cell::new(0u64));
    let changed = Rc::new(tokio::sync::Notify::new());
    let buffer = Rc::new(RefCell::new(vec![0u8; 256 * 1024]));
    let connected = Rc::new(tokio::sync::Semaphore::new(0));
    let gate = Rc::new(tokio::sync::Semaphore::new(100));
    for i in 0..a.clients {
        let source = Ipv4Addr::new(127, 0, 0, 2 + (i % a.source_ips.max(1) as usize) as u8);
        let (count, changed, buffer, connected, gate) = (
            count.clone(),
            changed.clone(),
            buffer.clone(),
            connected.clone(),
            gate.clone(),
        );
        let addr = a.addr;
        let ws = a.ws_path.clone().map(|p| (p, a.identifier.clone()));
        tokio::task::spawn_local(async move {
            let permit = gate.acquire().await.unwrap();
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind(SocketAddr::new(source.into(), 0)).unwrap();
            let mut stream = socket.connect(addr).await.expect("connect");
            let mut parser = Parser::default();
            if let Some((path, identifier)) = ws {
                let leftover = upgrade(&mut stream, &addr, &path, &identifier).await;
                parser.feed(&leftover);
            }
            drop(permit);
            connected.add_permits(1);
            loop {
                if stream.readable().await.is_err() {
                    return;
                }
                let mut buf = buffer.borrow_mut();
                match stream.try_read(&mut buf) {
                    Ok(0) => return,
                    Ok(n) => {
                        let frames = parser.feed(&buf[..n]);
                        if frames > 0 {
                            count.set(count.get() + frames);
                            changed.notify_one();
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(_) => return,
                }
            }
        });
    }
    let _all = connected.acquire_many(a.clients as u32).await.unwrap();
    let mut stdout = std::io::stdout();
    writeln!(stdout, "ready").unwrap();
    stdout.flush().unwrap();
    let mut lines =
        tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(tokio::io::stdin()));
    while let Ok(Some(line)) = lines.next_line().await {
        let target: u64 = line.trim().parse().expect("a count");
        while count.get() < target {
            changed.notified().await;
        }
        writeln!(stdout, "done {}", count.get()).unwrap();
        stdout.flush().unwrap();
    }
}

/// Upgrades to WebSocket and subscribes; returns what was read past the
/// confirmation (to be counted).
async fn upgrade(
    stream: &mut tokio::net::TcpStream,
    addr: &SocketAddr,
    path: &str,
    identifier: &str,
) -> Vec<u8> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: actioncable-v1-json\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .expect("handshake");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        let n = stream.read(&mut buf).await.expect("handshake answer");
        assert!(n > 0, "closed during the handshake");
        got.extend_from_slice(&buf[..n]);
        if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    assert!(
        got.starts_with(b"HTTP/1.1 101"),
        "upgrade refused: {}",
        String::from_utf8_lossy(&got)
    );
    got.drain(..head_end);
    let command =
        serde_json::json!({ "command": "subscribe", "identifier": identifier }).to_string();
    stream
        .write_all(&masked(command.as_bytes()))
        .await
        .expect("subscribe");
    // Frames up to and including the confirmation.
    loop {
        if let Some(end) = confirmation_end(&got) {
            return got.split_off(end);
        }
        let n = stream.read(&mut buf).await.expect("confirmation");
        assert!(n > 0, "closed before the confirmation");
        got.extend_from_slice(&buf[..n]);
    }
}

/// Where the frame holding `confirm_subscription` ends, if it is all in `buf`.
fn confirmation_end(buf: &[u8]) -> Option<usize> {
    let mut at = 0;
    loop {
        let (hlen, len) = header(&buf[at..buf.len().min(at + 14)])?;
        let end = at + hlen + len as usize;
        if end > buf.len() {
            return None;
        }
        let payload = &buf[at + hlen..end];
        if payload.windows(20).any(|w| w == b"confirm_subscription") {
            return Some(end);
        }
        if payload.windows(6).any(|w| w == b"reject") {
            panic!(
                "subscription rejected: {}",
                String::from_utf8_lossy(payload)
            );
        }
        at = end;
    }
}

/// A client text frame (masked, with a zero mask).
fn masked(text: &[u8]) -> Vec<u8> {
    let mut frame = vec![0x81];
    if text.len() < 126 {
        frame.push(0x80 | text.len() as u8);
    } else {
        frame.push(0x80 | 126);
        frame.extend_from_slice(&(text.len() as u16).to_be_bytes());
    }
    frame.extend_from_slice(&[0, 0, 0, 0]);
    frame.extend_from_slice(text);
    frame
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_counted_across_reads() {
        let frame = data_frame("id", &payload(200));
        let ping = {
            let mut f = vec![0x81, 16];
            f.extend_from_slice(b"{\"type\":\"ping\"}x");
            f
        };
        let stream: Vec<u8> = [frame.clone(), ping, frame.clone(), frame].concat();
        for chunk in [1, 2, 3, 7, 100, stream.len()] {
            let mut parser = Parser::default();
            let n: u64 = stream.chunks(chunk).map(|c| parser.feed(c)).sum();
            assert_eq!(n, 3, "chunks of {chunk}");
        }
    }
}
