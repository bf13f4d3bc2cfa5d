//! The fleet of benchmark clients: each is one task owning its WebSocket,
//! taking commands (broadcast, echo) over a channel and accounting for what
//! it receives in the shared run.

use crate::BroadcastOptions;
use crate::report::{BroadcastReport, ConnectReport, Latency, PerformReport, histogram};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde::Deserialize;
use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

const IDENTIFIER: &str = r#"{"channel":"BenchmarkChannel"}"#;
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

pub struct FleetOptions {
    pub url: String,
    pub clients: usize,
    pub concurrency: usize,
    pub source_ips: u8,
    /// The channel identifiers every client subscribes with, all at once
    /// as a page does (confirmed when every one is).
    pub identifiers: Vec<String>,
}

enum Cmd {
    Broadcast {
        id: u64,
        padding: usize,
    },
    Echo {
        until: Instant,
        done: oneshot::Sender<(u64, Histogram<u64>)>,
    },
}

/// One broadcast run: who received what, and the senders' round trips.
struct Run {
    generation: u64,
    received: Vec<AtomicU32>,
    duplicated: AtomicU64,
    rtt: Mutex<Histogram<u64>>,
    /// Broadcast id -> the waiter for the sender's own copy.
    waiters: Mutex<HashMap<u64, oneshot::Sender<()>>>,
}

#[derive(Default)]
struct Shared {
    run: RwLock<Option<Arc<Run>>>,
    generation: AtomicU64,
}

pub struct Fleet {
    clients: Vec<mpsc::UnboundedSender<Cmd>>,
    shared: Arc<Shared>,
}

#[derive(Deserialize)]
struct Incoming<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<&'a str>,
    #[serde(borrow)]
    message: Option<Body<'a>>,
}

#[derive(Deserialize)]
struct Body<'a> {
    #[serde(borrow)]
    action: Option<&'a str>,
    payload: Option<Payload>,
}

#[derive(Deserialize)]
struct Payload {
    id: Option<u64>,
    sent_by: Option<usize>,
}

fn progress(what: &str, done: usize, total: usize, started: Instant) {
    eprintln!(
        "  {what}: {done}/{total} ({:.1}s)",
        started.elapsed().as_secs_f64()
    );
}

impl Fleet {
    pub fn connected(&self) -> usize {
        self.clients.len()
    }

    /// Connects `clients` at `concurrency`, each subscribing to BenchmarkChannel.
    pub async fn connect(o: FleetOptions) -> (Fleet, ConnectReport) {
        let shared = Arc::new(Shared::default());
        let gate = Arc::new(Semaphore::new(o.concurrency.max(1)));
        let url = Arc::new(o.url.clone());
        let subscribe: Arc<Vec<String>> = Arc::new(
            o.identifiers
                .iter()
                .map(|id| {
                    format!(
                        r#"{{"command":"subscribe","identifier":{}}}"#,
                        serde_json::to_string(id).unwrap()
                    )
                })
                .collect(),
        );
        let every = if o.clients >= 5000 { 1000 } else { 100 };
        let welcome = Arc::new(Mutex::new(histogram()));
        let confirm = Arc::new(Mutex::new(histogram()));
        let done = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let mut tasks = Vec::with_capacity(o.clients);
        for i in 0..o.clients {
            let (gate, url, subscribe, welcome, confirm, done, shared) = (
                gate.clone(),
                url.clone(),
                subscribe.clone(),
                welcome.clone(),
                confirm.clone(),
                done.clone(),
                shared.clone(),
            );
            let source = Ipv4Addr::new(127, 0, 0, 2 + (i % o.source_ips as usize) as u8);
            let total = o.clients;
            tasks.push(tokio::spawn(async move {
                let _permit = gate.acquire_owned().await.expect("gate");
                let t0 = Instant::now();
                let result = tokio::time::timeout(STEP_TIMEOUT, open(&url, source)).await;
                let ws = match result {
                    Ok(Ok((ws, welcomed))) => {
                        welcome
                            .lock()
                            .unwrap()
                            .saturating_record(welcomed.as_micros() as u64);
                        ws
                    }
                    Ok(Err(e)) => {
                        eprintln!("  client {i}: {e}");
                        return None;
                    }
                    Err(_) => return None,
                };
                let mut ws = ws;
                for command in subscribe.iter() {
                    if ws
                        .feed(Message::Text(command.as_str().into()))
                        .await
                        .is_err()
                    {
                        return None;
                    }
                }
                if ws.flush().await.is_err() {
                    return None;
                }
                let confirmed = tokio::time::timeout(STEP_TIMEOUT, async {
                    let mut left = subscribe.len();
                    while let Some(Ok(m)) = ws.next().await {
                        if let Message::Text(t) = m {
                            if t.as_str().contains("reject_subscription") {
                                return false;
                            }
                            if t.as_str().contains("confirm_subscription") {
                                left -= 1;
                                if left == 0 {
                                    return true;
                                }
                            }
                        }
                    }
                    false
                })
                .await;
                if confirmed != Ok(true) {
                    return None;
                }
                confirm
                    .lock()
                    .unwrap()
                    .saturating_record(t0.elapsed().as_micros() as u64);
                let n = done.fetch_add(1, Ordering::Relaxed) + 1;
                if n % every == 0 {
                    progress("connected", n, total, started);
                }
                let (tx, rx) = mpsc::unbounded_channel();
                tokio::spawn(client_task(i, ws, rx, shared));
                Some(tx)
            }));
        }
        let mut clients = Vec::with_capacity(o.clients);
        for t in tasks {
            if let Ok(Some(tx)) = t.await {
                clients.push(tx);
            }
        }
        let report = ConnectReport {
            clients: o.clients,
            connected: clients.len(),
            failures: o.clients - clients.len(),
            wall_ms: started.elapsed().as_secs_f64() * 1000.0,
            welcome: Latency::of(&welcome.lock().unwrap()),
            confirm: Latency::of(&confirm.lock().unwrap()),
        };
        (Fleet { clients, shared }, report)
    }

    pub async fn broadcast(&self, o: &BroadcastOptions) -> BroadcastReport {
        let total = o.samples * o.senders;
        let n = self.clients.len();
        let run = Arc::new(Run {
            generation: self.shared.generation.fetch_add(1, Ordering::SeqCst) + 1,
            received: (0..total).map(|_| AtomicU32::new(0)).collect(),
            duplicated: AtomicU64::new(0),
            rtt: Mutex::new(histogram()),
            waiters: Mutex::new(HashMap::new()),
        });
        *self.shared.run.write().unwrap() = Some(run.clone());
        let started = Instant::now();
        for sample in 0..o.samples {
            let mut waits = Vec::with_capacity(o.senders);
            for k in 0..o.senders {
                let id = (sample * o.senders + k) as u64;
                let (tx, rx) = oneshot::channel();
                run.waiters.lock().unwrap().insert(id, tx);
                let _ = self.clients[fastrand::usize(..n)].send(Cmd::Broadcast {
                    id,
                    padding: o.padding,
                });
                waits.push(rx);
            }
            for w in waits {
                let _ = tokio::time::timeout(STEP_TIMEOUT, w).await;
            }
            if (sample + 1) % 5 == 0 || sample + 1 == o.samples {
                progress("broadcast samples", sample + 1, o.samples, started);
            }
        }
        let expected = (total * n) as u64;
        let received = || {
            run.received
                .iter()
                .map(|c| c.load(Ordering::Relaxed) as u64)
                .sum::<u64>()
        };
        let deadline = Instant::now() + Duration::from_secs(o.drain);
        while received() < expected && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let wall_ms = started.elapsed().as_secs_f64() * 1000.0;
        *self.shared.run.write().unwrap() = None;
        let got = received();
        BroadcastReport {
            clients: n,
            broadcasts: total,
            rtt: Latency::of(&run.rtt.lock().unwrap()),
            expected,
            received: got,
            missing: expected.saturating_sub(got),
            duplicated: run.duplicated.load(Ordering::Relaxed),
            wall_ms,
        }
    }

    pub async fn perform(&self, duration: Duration) -> PerformReport {
        let until = Instant::now() + duration;
        let started = Instant::now();
        let mut waits = Vec::new();
        for c in &self.clients {
            let (done, rx) = oneshot::channel();
            if c.send(Cmd::Echo { until, done }).is_ok() {
                waits.push(rx);
            }
        }
        let mut all = histogram();
        let mut requests = 0;
        for w in waits {
            if let Ok(Ok((count, h))) = tokio::time::timeout(duration + STEP_TIMEOUT, w).await {
                requests += count;
                let _ = all.add(&h);
            }
        }
        let elapsed = started.elapsed().as_secs_f64();
        PerformReport {
            clients: self.clients.len(),
            duration_ms: elapsed * 1000.0,
            requests,
            per_second: requests as f64 / elapsed,
            latency: Latency::of(&all),
        }
    }
}

pub(crate) type Ws = WebSocketStream<tokio::net::TcpStream>;

/// Opens one connection from `source` (bound to it when the server is on
/// loopback, where every source address gets its own ports) and waits for
/// the welcome; the soak and the connect benchmark share it.
pub(crate) async fn open(url: &str, source: Ipv4Addr) -> Result<(Ws, Duration), String> {
    let t0 = Instant::now();
    let mut request = url.into_client_request().map_err(|e| e.to_string())?;
    request.headers_mut().insert(
        "sec-websocket-protocol",
        "actioncable-v1-json".parse().unwrap(),
    );
    let uri = request.uri().clone();
    let host = uri.host().ok_or("no host in the URL")?;
    let port = uri.port_u16().unwrap_or(80);
    let addr: SocketAddr = tokio::net::lookup_host((host, port))
        .await
        .map_err(|e| e.to_string())?
        .find(|a| a.is_ipv4())
        .ok_or("no IPv4 address")?;
    let socket = tokio::net::TcpSocket::new_v4().map_err(|e| e.to_string())?;
    if addr.ip().is_loopback() {
        socket
            .bind(SocketAddr::new(source.into(), 0))
            .map_err(|e| e.to_string())?;
    }
    let stream = socket
        .connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = stream.set_nodelay(true);
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(4096);
    let (mut ws, _) = tokio_tungstenite::client_async_with_config(request, stream, Some(config))
        .await
        .map_err(|e| e.to_string())?;
    while let Some(m) = ws.next().await {
        if let Message::Text(t) = m.map_err(|e| e.to_string())?
            && t.as_str().contains(r#""welcome""#)
        {
            return Ok((ws, t0.elapsed()));
        }
    }
    Err("closed before the welcome".into())
}

/// An echo loop in progress: deadline, when the pending echo was sent, round
/// trips so far, their latencies, and where to report at the end.
type Echo = (
    Instant,
    Instant,
    u64,
    Histogram<u64>,
    oneshot::Sender<(u64, Histogram<u64>)>,
);

async fn client_task(
    me: usize,
    mut ws: Ws,
    mut commands: mpsc::UnboundedReceiver<Cmd>,
    shared: Arc<Shared>,
) {
    let mut sent_at: HashMap<u64, Instant> = HashMap::new();
    let mut seen: HashSet<u64> = HashSet::new();
    let mut seen_generation = 0;
    // An echo loop in progress: (deadline, sent at, count, histogram, done).
    let mut echo: Option<Echo> = None;
    let perform = |data: String| {
        format!(
            r#"{{"command":"message","identifier":{},"data":{}}}"#,
            serde_json::to_string(IDENTIFIER).unwrap(),
            serde_json::to_string(&data).unwrap()
        )
    };
    loop {
        tokio::select! {
            cmd = commands.recv() => match cmd {
                None => break,
                Some(Cmd::Broadcast { id, padding }) => {
                    let data = format!(
                        r#"{{"action":"broadcast","payload":{{"id":{id},"sent_by":{me},"pad":"{}"}}}}"#,
                        "x".repeat(padding)
                    );
                    sent_at.insert(id, Instant::now());
                    if ws.send(Message::Text(perform(data).into())).await.is_err() {
                        break;
                    }
                }
                Some(Cmd::Echo { until, done }) => {
                    let now = Instant::now();
                    let data = r#"{"action":"echo","payload":{"n":1}}"#.to_owned();
                    if ws.send(Message::Text(perform(data).into())).await.is_err() {
                        break;
                    }
                    echo = Some((until, now, 0, histogram(), done));
                }
            },
            msg = ws.next() => {
                let Some(Ok(Message::Text(text))) = msg else {
                    if matches!(msg, None | Some(Err(_))) { break } else { continue }
                };
                let Ok(incoming) = serde_json::from_str::<Incoming>(text.as_str()) else { continue };
                if incoming.kind.is_some() {
                    continue; // ping, welcome, confirmations
                }
                let Some(body) = incoming.message else { continue };
                match body.action {
                    Some("broadcast") => {
                        let Some(Payload { id: Some(id), sent_by }) = body.payload else { continue };
                        let run = shared.run.read().unwrap().clone();
                        let Some(run) = run else { continue };
                        if seen_generation != run.generation {
                            seen.clear();
                            seen_generation = run.generation;
                        }
                        if !seen.insert(id) {
                            run.duplicated.fetch_add(1, Ordering::Relaxed);
                            continue;
                        }
                        if let Some(c) = run.received.get(id as usize) {
                            c.fetch_add(1, Ordering::Relaxed);
                        }
                        if sent_by == Some(me)
                            && let Some(t0) = sent_at.remove(&id)
                        {
                            run.rtt.lock().unwrap().saturating_record(t0.elapsed().as_micros() as u64);
                            if let Some(w) = run.waiters.lock().unwrap().remove(&id) {
                                let _ = w.send(());
                            }
                        }
                    }
                    Some("echo") => {
                        if let Some((until, t0, count, mut h, done)) = echo.take() {
                            h.saturating_record(t0.elapsed().as_micros() as u64);
                            let count = count + 1;
                            let now = Instant::now();
                            if now >= until {
                                let _ = done.send((count, h));
                            } else {
                                let data = r#"{"action":"echo","payload":{"n":1}}"#.to_owned();
                                if ws.send(Message::Text(perform(data).into())).await.is_err() {
                                    break;
                                }
                                echo = Some((until, now, count, h, done));
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}
