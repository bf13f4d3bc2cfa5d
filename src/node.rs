//! The node: every live session of this server, what is published to them,
//! and what happens when they go away.
//!
//! It owns the hub, the controller, the registry of sessions (by session id
//! for pings, transmissions and shutdown; by connection identifiers for
//! remote disconnects), the [`DisconnectQueue`], and the count of sessions
//! that shutdown waits for (a [`TaskTracker`] token per session, from its
//! accepted handshake to its end).

use crate::broadcast::pubsub::Bus;
use crate::broadcast::{Publish, Reach, Relayed, Transient, TransientKind};
use crate::broker::memory::Memory;
use crate::broker::redis::Redis;
use crate::broker::{Broker, Publication};
use crate::client_log::{client_log, compact};
use crate::config::{BrokerAdapter, Config};
use crate::controller::{Controller, DisconnectRequest};
use crate::disconnect_queue::DisconnectQueue;
use crate::hub::Hub;
use crate::metrics::Metrics;
use crate::outgoing::{CloseRequest, SessionHandle};
use crate::protocol::DisconnectReason;
use crate::write_budget::{MeteredIo, WriteBudget};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tokio_util::task::TaskTracker;
use tokio_util::task::task_tracker::TaskTrackerToken;
use tracing::{debug, error, info};

pub struct Node {
    pub config: Arc<Config>,
    /// The runtime the node's tasks run on: methods called from threads
    /// outside it (Ruby's) spawn their timers here.
    runtime: tokio::runtime::Handle,
    pub hub: Hub,
    pub metrics: Arc<Metrics>,
    pub controller: Arc<dyn Controller>,
    next_id: AtomicU64,
    /// Live sessions by session id (pings, shutdown, transmissions by sid).
    sessions: Mutex<HashMap<Arc<str>, Arc<SessionHandle>>>,
    /// Connection identifiers → sessions, for remote disconnects.
    by_identifiers: Mutex<HashMap<String, HashMap<u64, Arc<SessionHandle>>>>,
    disconnects: DisconnectQueue,
    /// Sessions open or being set up: what `max_conn` limits and shutdown
    /// waits for.
    open: TaskTracker,
    shutting_down: AtomicBool,
    /// Stream positions, history, stored sessions (`broker`); none with
    /// `broker=none`.
    pub broker: Option<Arc<dyn Broker>>,
    /// Broadcasts waiting for their position, in arrival order (with a
    /// broker): [`position_loop`] positions and delivers them one by one.
    to_position: Option<mpsc::UnboundedSender<Pending>>,
    /// The bus to the other nodes (`pubsub`): whispers, presence events,
    /// and the publications that entered this node only, passed on.
    pub pubsub: Bus,
    /// Closed sessions of a stateful application kept for restore: their
    /// Disconnect call waits `sessions_ttl` (see [`Node::park_disconnect`]).
    parked: Mutex<HashMap<Arc<str>, Parked>>,
}

/// A parked Disconnect (see [`Node::park_disconnect`]).
struct Parked {
    task: tokio::task::AbortHandle,
    request: DisconnectRequest,
    /// The sid whose connection object the application still holds, if not
    /// the parked session's own (it was restored and never rebuilt).
    origin: Option<String>,
}

/// A broadcast waiting for its position.
struct Pending {
    stream: String,
    data: String,
    exclude_socket: Option<String>,
    key: Option<String>,
    /// Entered this node only: passed on to the others once positioned.
    relay: bool,
}

impl Node {
    /// Creates the node and starts its background tasks (pings, the
    /// Disconnect worker); must be called inside a tokio runtime.
    pub fn start(
        config: Arc<Config>,
        controller: Arc<dyn Controller>,
        metrics: Arc<Metrics>,
    ) -> Arc<Node> {
        let disconnects = DisconnectQueue::start(&config, controller.clone(), metrics.clone());
        let broker = make_broker(&config);
        let config_pubsub = config.pubsub_transport().is_some();
        let broadcast_key = config.effective_broadcast_key();
        let (to_position, positions) = match &broker {
            Some(_) => {
                let (tx, rx) = mpsc::unbounded_channel();
                (Some(tx), Some(rx))
            }
            None => (None, None),
        };
        let node = Arc::new(Node {
            runtime: tokio::runtime::Handle::current(),
            hub: Hub::new(metrics.clone()),
            config,
            metrics,
            controller,
            next_id: AtomicU64::new(1),
            sessions: Mutex::new(HashMap::new()),
            by_identifiers: Mutex::new(HashMap::new()),
            disconnects,
            open: TaskTracker::new(),
            shutting_down: AtomicBool::new(false),
            broker: broker.clone(),
            to_position,
            pubsub: Bus::new(config_pubsub, broadcast_key.as_deref()),
            parked: Mutex::new(HashMap::new()),
        });
        if let (Some(broker), Some(positions)) = (broker, positions) {
            tokio::spawn(position_loop(Arc::downgrade(&node), broker, positions));
        }
        tokio::spawn(ping_loop(
            Arc::downgrade(&node),
            node.config.ping_interval(),
        ));
        tokio::spawn(trim_loop(Arc::downgrade(&node)));
        node
    }

    /// Sends a transient message (a whisper, a presence event) to its
    /// stream's subscribers on every node: here at once, on the others
    /// through the bus.
    pub fn spread(&self, message: Transient) {
        self.deliver_transient(&message);
        self.pubsub.send(&message);
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    /// Queues a frame to one session by its id, outside of any command (the
    /// gem's timers). Returns whether that session is here and took it.
    pub fn transmit(&self, sid: &str, frame: String) -> bool {
        let session = lock(&self.sessions).get(sid).cloned();
        session.is_some_and(|s| s.is_welcomed() && s.send(frame.into()))
    }

    /// Closes one session by its id after the frames queued for it (the gem's
    /// `websocket.close` outside of a call). Returns whether it is here.
    pub fn close(&self, sid: &str) -> bool {
        let session = lock(&self.sessions).get(sid).cloned();
        session.is_some_and(|s| {
            s.close_soon(&self.runtime, CloseRequest::silent(1000));
            true
        })
    }

    /// Sessions open or being set up (what `max_conn` limits).
    pub fn open_sessions(&self) -> usize {
        self.open.len()
    }

    pub fn session_count(&self) -> usize {
        lock(&self.sessions).len()
    }

    /// Counts a session from the moment its handshake is accepted, so
    /// shutdown waits for sessions that are still upgrading.
    pub(crate) fn reserve_session(&self) -> Reservation {
        Reservation {
            sid: new_sid().into(),
            budget: WriteBudget::new(self.config.ws_max_pending_size),
            open: self.open.token(),
        }
    }

    /// Registers a new session and returns its handle, its outgoing queue
    /// and its place in the count of open sessions (which the session keeps
    /// until it has queued its Disconnect and left: [`Node::close_session`]).
    pub(crate) fn open_session(
        &self,
        reservation: Reservation,
    ) -> (
        Arc<SessionHandle>,
        crate::outgoing::Receiver,
        TaskTrackerToken,
    ) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (handle, queue) = SessionHandle::new(
            id,
            reservation.sid.clone(),
            reservation.budget.clone(),
            self.metrics.clone(),
        );
        lock(&self.sessions).insert(handle.sid.clone(), handle.clone());
        self.metrics.clients.inc();
        self.metrics.connections.inc();
        if self.is_shutting_down() {
            handle.close(CloseRequest::disconnect(
                DisconnectReason::ServerRestart,
                true,
            ));
        }
        (handle, queue, reservation.open)
    }

    pub(crate) fn register_identifiers(&self, identifiers: &str, handle: &Arc<SessionHandle>) {
        lock(&self.by_identifiers)
            .entry(identifiers.to_owned())
            .or_default()
            .insert(handle.id, handle.clone());
    }

    /// Takes a session out of the registry. Its count (`open`) ends here: in
    /// this order after its Disconnect is queued, so shutdown (which waits
    /// for open sessions, then queued calls) never misses one.
    pub(crate) fn close_session(
        &self,
        handle: &SessionHandle,
        identifiers: &str,
        open: TaskTrackerToken,
    ) {
        if lock(&self.sessions).remove(&handle.sid).is_some() {
            self.metrics.clients.dec();
        }
        let mut by_identifiers = lock(&self.by_identifiers);
        if let Some(sessions) = by_identifiers.get_mut(identifiers) {
            sessions.remove(&handle.id);
            if sessions.is_empty() {
                by_identifiers.remove(identifiers);
            }
        }
        drop(by_identifiers);
        drop(open);
    }

    /// Queues the Disconnect call for a session that connected (paced; when
    /// the backlog is full, dropped and counted for a stateless application,
    /// else waited for: see `disconnect_queue`).
    pub(crate) async fn enqueue_disconnect(&self, sid: Arc<str>, request: DisconnectRequest) {
        self.disconnects.enqueue(sid, request).await;
    }

    /// A stateful application's session that closed but may be restored
    /// (embedded, extended protocol, a broker keeping sessions): its
    /// connection object stays alive and its Disconnect call (`unsubscribed`,
    /// `disconnect`) waits `sessions_ttl`, so they run once, when the session
    /// finally ends. A restore on this node takes it over
    /// ([`Node::claim_parked`]). During shutdown it is left to the process
    /// that restores the session only when the stored session outlives this
    /// one ([`Node::restorable_after_exit`]); otherwise nobody could restore
    /// it, and it is made now, as for any session.
    pub(crate) async fn park_disconnect(
        self: &Arc<Self>,
        sid: Arc<str>,
        request: DisconnectRequest,
        origin: Option<String>,
    ) {
        // Checked under the lock: shutdown sets the flag before it drains
        // the parked ones, so an entry put in here is always drained.
        let mut parked = lock(&self.parked);
        if self.is_shutting_down() {
            drop(parked);
            if self.restorable_after_exit() {
                debug!(sid = %sid, "shutting down: the Disconnect of a restorable session is left to its restorer");
            } else {
                self.enqueue_disconnect(sid, request).await;
            }
            return;
        }
        let ttl = std::time::Duration::from_secs(self.config.sessions_ttl);
        let node = Arc::downgrade(self);
        let key = sid.clone();
        let task = self.runtime.spawn(async move {
            tokio::time::sleep(ttl).await;
            let Some(node) = node.upgrade() else { return };
            let expired = lock(&node.parked).remove(&key);
            if let Some(parked) = expired {
                debug!(sid = %key, "restorable session not restored within sessions_ttl; disconnecting");
                node.enqueue_disconnect(key, parked.request).await;
            }
        });
        let task = task.abort_handle();
        parked.insert(
            sid,
            Parked {
                task,
                request,
                origin,
            },
        );
    }

    /// Whether a session stored now can be restored once this process has
    /// exited: a broker whose stored sessions outlive it (Redis), keeping
    /// sessions (`sessions_ttl`). With the memory broker they go with it.
    pub(crate) fn restorable_after_exit(&self) -> bool {
        self.config.sessions_ttl > 0
            && self
                .broker
                .as_ref()
                .is_some_and(|b| b.sessions_outlive_process())
    }

    /// Takes over a parked session (see [`Node::park_disconnect`]): its
    /// Disconnect is cancelled; the restored session makes it. Returns
    /// whether it was parked here, and the sid whose connection object the
    /// application holds for it if not its own.
    pub(crate) fn claim_parked(&self, sid: &str) -> Option<Option<String>> {
        let parked = lock(&self.parked).remove(sid)?;
        parked.task.abort();
        Some(parked.origin)
    }

    /// Graceful shutdown: every client gets `server_restart` (close 1001;
    /// an extended-protocol session restorable after the exit only the
    /// close), then this waits until every session has ended and every
    /// Disconnect call has been made. The caller bounds it with
    /// `shutdown_timeout`.
    pub async fn shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
        self.disconnects.hurry();
        let parked: Vec<_> = lock(&self.parked).drain().collect();
        // Parked Disconnects: left to the restorer when the stored sessions
        // outlive this process; made now when they do not (memory broker).
        let restorable = self.restorable_after_exit();
        for (sid, parked) in parked {
            parked.task.abort();
            if !restorable {
                self.enqueue_disconnect(sid, parked.request).await;
            }
        }
        let sessions: Vec<_> = lock(&self.sessions).values().cloned().collect();
        info!(
            sessions = sessions.len(),
            "shutting down: disconnecting clients"
        );
        // An extended-protocol client whose session is kept for restore is
        // closed with 1001 and no `disconnect` message: @anycable/core
        // forgets its sid on a `disconnect` message (action_cable_ext
        // `receive`), and comes back restored without one. anycable-go 1.6
        // sends it to everyone (node/node.go `disconnectAll`).
        for session in sessions {
            let close = match restorable && session.tracks_positions() {
                true => CloseRequest::silent(1001),
                false => CloseRequest::disconnect(DisconnectReason::ServerRestart, true),
            };
            session.close_soon(&self.runtime, close);
        }
        // A session that was upgrading when shutdown began registers late and
        // closes itself (open_session sees the flag); it is counted from its
        // reservation on. A session queues its Disconnect before its count
        // ends, so once no session is left every call is in the queue's count.
        self.open.close();
        self.open.wait().await;
        self.disconnects.drained().await;
        info!("shutdown complete: all sessions closed, Disconnect calls made");
    }

    /// Counts still outstanding (for logs when shutdown times out).
    pub fn outstanding(&self) -> (usize, usize) {
        (self.open.len(), self.disconnects.len())
    }
}

/// Publications reach this node's sessions: broadcasts through the hub,
/// remote disconnects through the registry of identifiers.
impl Publish for Node {
    fn deliver(&self, stream: &str, data: &str, exclude_socket: Option<&str>) -> usize {
        self.deliver_from(stream, data, exclude_socket, Reach::EveryNode { key: None })
    }

    /// With a broker, the broadcast is positioned first: at once by a
    /// broker in this process, else (in arrival order) by [`position_loop`],
    /// which delivers it (counted as queued there). One that entered this
    /// node only is then passed on to the other nodes at that position.
    fn deliver_from(
        &self,
        stream: &str,
        data: &str,
        exclude_socket: Option<&str>,
        reach: Reach<'_>,
    ) -> usize {
        let (key, relay) = match reach {
            Reach::EveryNode { key } => (key, false),
            Reach::ThisNode => (None, self.pubsub.is_enabled()),
        };
        let relayed = |position: Option<(String, u64)>| {
            if relay {
                self.pubsub.relay(&Relayed {
                    stream: stream.to_owned(),
                    data: data.to_owned(),
                    exclude_socket: exclude_socket.map(str::to_owned),
                    position,
                });
            }
        };
        let (Some(broker), Some(to_position)) = (&self.broker, &self.to_position) else {
            let queued = self.hub.broadcast(stream, data, exclude_socket).queued;
            relayed(None);
            return queued;
        };
        // A store in this process positions at once: delivered here, in
        // the caller's order, as without a broker.
        if let Some(position) = broker.publish_now(stream, data, key) {
            let queued = self
                .hub
                .broadcast_at(stream, data, exclude_socket, Some(&position))
                .queued;
            relayed(Some((position.epoch, position.offset)));
            return queued;
        }
        let pending = Pending {
            stream: stream.to_owned(),
            data: data.to_owned(),
            exclude_socket: exclude_socket.map(str::to_owned),
            key: key.map(str::to_owned),
            relay,
        };
        if let Err(mpsc::error::SendError(pending)) = to_position.send(pending) {
            // The loop is gone (the node is being dropped): deliver as is.
            let queued = self
                .hub
                .broadcast(&pending.stream, &pending.data, exclude_socket)
                .queued;
            relayed(None);
            return queued;
        }
        0
    }

    /// At the position the receiving node gave it: not positioned again.
    fn deliver_relayed(&self, message: &Relayed) -> usize {
        let position = message
            .position
            .as_ref()
            .map(|(epoch, offset)| crate::broker::Position {
                epoch: epoch.clone(),
                offset: *offset,
            });
        self.hub
            .broadcast_at(
                &message.stream,
                &message.data,
                message.exclude_socket.as_deref(),
                position.as_ref(),
            )
            .queued
    }

    fn remote_disconnect_from(
        &self,
        identifiers: &str,
        reconnect: bool,
        reach: Reach<'_>,
    ) -> usize {
        let sessions = self.remote_disconnect(identifiers, reconnect);
        if reach == Reach::ThisNode {
            self.pubsub.relay_disconnect(identifiers, reconnect);
        }
        sessions
    }

    fn deliver_transient(&self, message: &Transient) -> usize {
        let exclude = message.exclude_socket.as_deref();
        let data = message.data.as_str();
        let is_json = crate::protocol::is_json(data);
        match message.kind {
            TransientKind::Message => self.hub.send_event(&message.stream, exclude, |id| {
                crate::protocol::data_message_with(id, data, is_json)
            }),
            TransientKind::Presence => {
                let json;
                let data = match is_json {
                    true => data.trim(),
                    false => {
                        json = serde_json::Value::from(data).to_string();
                        &json
                    }
                };
                self.hub.send_event(&message.stream, exclude, |id| {
                    crate::protocol::presence_message(id, data)
                })
            }
        }
    }

    fn remote_disconnect(&self, identifiers: &str, reconnect: bool) -> usize {
        let sessions: Vec<_> = lock(&self.by_identifiers)
            .get(identifiers)
            .map(|s| s.values().cloned().collect())
            .unwrap_or_default();
        for session in &sessions {
            // A kick is final: not parked, not restorable.
            session.mark_final();
            session.close_soon(
                &self.runtime,
                CloseRequest::disconnect(DisconnectReason::Remote, reconnect),
            );
        }
        sessions.len()
    }

    fn metrics(&self) -> &Metrics {
        &self.metrics
    }
}

/// The broker `broker` names (see [`Config::broker`]).
fn make_broker(config: &Config) -> Option<Arc<dyn Broker>> {
    let limits = config.broker_limits();
    let broker: Arc<dyn Broker> = match config.broker() {
        BrokerAdapter::None => return None,
        BrokerAdapter::Memory => Arc::new(Memory::new(limits)),
        BrokerAdapter::Redis => match Redis::new(&config.redis_target(), limits) {
            Ok(redis) => Arc::new(redis),
            Err(e) => {
                // The Redis TLS files were checked at start: only a URL
                // the redis crate refuses gets here.
                error!(error = %e, "broker=redis: invalid redis_url; running without a broker (no history, no session restore)");
                return None;
            }
        },
    };
    info!(broker = %broker.describe(), "stream positions and history");
    Some(broker)
}

/// Positions each broadcast (in arrival order: those waiting go to the
/// broker together, one round trip, in order, so a stream's offsets follow
/// its delivery order) and delivers it. A broker
/// that does not answer costs the positions, never the broadcast: it is
/// delivered without one (extended-protocol clients see a message with no
/// position; their next history request is refused).
async fn position_loop(
    node: Weak<Node>,
    broker: Arc<dyn Broker>,
    mut pending: mpsc::UnboundedReceiver<Pending>,
) {
    let mut batch = Vec::with_capacity(POSITION_BATCH);
    loop {
        // What has queued up meanwhile goes in one round trip (Redis: one
        // pipeline), still in arrival order.
        if pending.recv_many(&mut batch, POSITION_BATCH).await == 0 {
            return;
        }
        let publications: Vec<Publication> = batch
            .iter()
            .map(|p| Publication {
                stream: p.stream.clone(),
                data: p.data.clone(),
                key: p.key.clone(),
            })
            .collect();
        let positions = broker.publish_many(&publications).await;
        let Some(node) = node.upgrade() else { return };
        for (p, position) in batch.drain(..).zip(positions) {
            let position = match position {
                Ok(position) => Some(position),
                Err(e) => {
                    node.metrics.broadcast_errors.inc();
                    client_log!(WARN, stream = %compact(p.stream.as_str()), error = %e, "broadcast not positioned (delivered without history)");
                    None
                }
            };
            let delivery = node.hub.broadcast_at(
                &p.stream,
                &p.data,
                p.exclude_socket.as_deref(),
                position.as_ref(),
            );
            debug!(stream = %compact(p.stream.as_str()), queued = delivery.queued, offset = position.as_ref().map(|p| p.offset), "broadcast positioned");
            if p.relay {
                node.pubsub.relay(&Relayed {
                    stream: p.stream,
                    data: p.data,
                    exclude_socket: p.exclude_socket,
                    position: position.map(|p| (p.epoch, p.offset)),
                });
            }
        }
    }
}

/// Broadcasts positioned in one round trip at most.
const POSITION_BATCH: usize = 128;

/// A session being set up (handshake accepted, not yet registered).
pub(crate) struct Reservation {
    /// The session id, known from the handshake on (a stateful application
    /// is asked to connect before the upgrade).
    sid: Arc<str>,
    /// The write budget of the socket to come, shared by its meter and its session.
    budget: Arc<WriteBudget>,
    /// Its place in the count of open sessions; a reservation dropped
    /// unused (an upgrade that failed) gives it back.
    open: TaskTrackerToken,
}

impl Reservation {
    pub(crate) fn sid(&self) -> &str {
        &self.sid
    }

    /// Wraps the upgraded socket so the session's budget sees what it writes.
    pub(crate) fn meter<S>(&self, io: S) -> MeteredIo<S> {
        self.budget.meter(io)
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A random session id: 20 alphanumeric characters (119 bits) from the
/// operating system's CSPRNG, unique across nodes so `exclude_socket` works
/// cluster-wide, and unguessable, since a sid will restore a session.
fn new_sid() -> String {
    const ALPHABET: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut sid = String::with_capacity(20);
    let mut bytes = [0u8; 32];
    while sid.len() < 20 {
        getrandom::fill(&mut bytes).expect("the operating system's random source");
        // Bytes from 248 up are dropped: 248 = 4 x 62 keeps every character equally likely.
        for b in bytes.iter().filter(|b| **b < 248).take(20 - sid.len()) {
            sid.push(ALPHABET[(*b % 62) as usize] as char);
        }
    }
    sid
}

/// Sessions that must have gone since the last peak before memory is
/// handed back to the OS (a few small departures are not worth it).
const TRIM_AFTER_CLOSED: usize = 1000;
/// Sessions that must have arrived since the last trim (or the low point
/// since) before the memory their connects freed is handed back.
const TRIM_AFTER_OPENED: usize = 1000;
const TRIM_CHECK: Duration = Duration::from_secs(2);
const TRIMS_AFTER_WAVE: u8 = 3;

/// Gives memory freed after a spike back to the OS. glibc keeps freed heap
/// pages for reuse, so after 10,000 clients leave the process would stay at
/// its peak RSS. Once a wave of departures has ended (the count did not move
/// for a tick) having taken at least [`TRIM_AFTER_CLOSED`] sessions and half
/// the peak, `malloc_trim` returns the free pages (in the gem, Ruby's freed
/// memory too). What the departed sessions still held at that moment
/// (Disconnect calls finishing, tasks not yet dropped) is freed a little
/// later, so the next [`TRIMS_AFTER_WAVE`] ticks trim again while no wave
/// of arrivals has begun.
///
/// A wave of arrivals that has ended (at least [`TRIM_AFTER_OPENED`] more
/// sessions than the low point since the last trim, the count still for a
/// tick) is trimmed once too: what the connects allocated and freed
/// (requests, calls, replies; in the gem, the application's middleware
/// and Ruby's side of every call) stays in glibc's heap between the live
/// sessions otherwise. Measured in the gem at 5,000 idle connections: 0.55
/// KiB per connection given back, of 22.7 (BENCHMARKS.md).
async fn trim_loop(node: Weak<Node>) {
    let (mut peak, mut trough, mut last, mut again, mut after_wave) = (0, 0, 0, 0, 0);
    let mut ticker = tokio::time::interval(TRIM_CHECK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let Some(node) = node.upgrade() else { return };
        let now = node.open_sessions();
        drop(node);
        peak = peak.max(now);
        trough = trough.min(now);
        let settled = now == last;
        last = now;
        let wave_ended = settled && peak - now >= TRIM_AFTER_CLOSED && now <= peak / 2;
        let arrivals_ended = settled && now - trough >= TRIM_AFTER_OPENED;
        if wave_ended {
            peak = now;
            trough = now;
            after_wave = now;
            again = TRIMS_AFTER_WAVE;
        } else if arrivals_ended {
            trough = now;
            again = 0;
        } else if again > 0 && now <= after_wave {
            again -= 1;
        } else {
            again = 0;
            continue;
        }
        let _ = tokio::task::spawn_blocking(return_free_memory).await;
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn return_free_memory() {
    // SAFETY: malloc_trim only walks glibc's own arenas; any thread may call it.
    let released = unsafe { libc::malloc_trim(0) };
    debug!(released, "free heap memory returned to the OS");
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn return_free_memory() {}

/// One ping frame per tick, shared by every welcomed session (except
/// those with pings of their own: `?pi=`, `?ptp=`, `pong_timeout`).
async fn ping_loop(node: Weak<Node>, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let Some(node) = node.upgrade() else { return };
        let frame = Utf8Bytes::from(node.config.ping_timestamp_precision.ping_now());
        let sessions: Vec<_> = lock(&node.sessions)
            .values()
            .filter(|s| s.is_welcomed() && !s.pings_itself())
            .cloned()
            .collect();
        for session in sessions {
            session.send(frame.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sids_are_20_alphanumerics_and_do_not_repeat() {
        let sids: std::collections::HashSet<String> = (0..10_000).map(|_| new_sid()).collect();
        assert_eq!(sids.len(), 10_000);
        assert!(
            sids.iter()
                .all(|s| s.len() == 20 && s.bytes().all(|b| b.is_ascii_alphanumeric()))
        );
        // Every character of the alphabet shows up (a biased or stuck source would not).
        let used: std::collections::HashSet<u8> = sids.iter().flat_map(|s| s.bytes()).collect();
        assert_eq!(used.len(), 62);
    }
}
