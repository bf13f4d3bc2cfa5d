//! One client connection: the reader task that runs the client's commands
//! in order and applies the application's replies, and the subscription
//! state it owns. What goes out to the client, and the closing of the
//! socket, is [`crate::outgoing`]'s: the reader sends through its
//! [`SessionHandle`] like everyone else, and starts the writer task.
//!
//! The reader owns all per-session state (identifiers, subscriptions, state
//! maps), so nothing here needs a lock.
//!
//! With a stateful controller (the embedded gem, which runs Action Cable's
//! own connection code) the session passes every command through as the
//! client sent it and adds no reply of its own: confirmations, rejections,
//! duplicates and unknown identifiers are the application's business, as
//! they are under Action Cable. With a stateless RPC application it keeps
//! AnyCable's rules (duplicates ignored, confirmations added when missing).

use crate::broadcast::Publish;
use crate::broker::{Broker, Position};
use crate::client_log::{client_log, compact};
use crate::config::DisconnectMode;
use crate::controller::{
    AppPresence, CallError, Command, CommandKind, CommandReply, ConnectReply, DisconnectRequest,
    Env, StateMap, Status, StreamMessage, merge_state,
};
use crate::hub::Via;
use crate::node::{Node, Reservation};
use crate::outgoing::{CLOSE_GRACE, CloseRequest, SessionHandle, write_loop};
use crate::presence;
use crate::protocol::{self, ClientCommand, DisconnectReason, HistoryRequest, TimestampPrecision};
use crate::websocket::{self, FrameReader, Incoming, ReadError};
use compact::{VecMap, VecSet};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite, ReadHalf};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tokio_util::task::task_tracker::TaskTrackerToken;
use tracing::debug;

/// What a session knows about its HTTP request.
#[derive(Debug, Clone)]
pub struct RequestInfo {
    pub url: String,
    pub headers: StateMap,
    /// The client speaks `actioncable-v1-ext-json` (stream positions,
    /// history, session restore).
    pub extended: bool,
    /// The sid of a previous session to restore (extended protocol:
    /// `X-ANYCABLE-RESTORE-SID` or `?sid=`).
    pub restore_sid: Option<String>,
    /// The client's own ping interval in seconds (`?pi=`; 0: no pings).
    pub ping_interval: Option<u64>,
    /// The client's own ping timestamp precision (`?ptp=`).
    pub ping_precision: Option<TimestampPrecision>,
}

#[derive(Default)]
struct Subscription {
    streams: VecSet,
    istate: VecMap<String, String>,
    /// The streams among `streams` whose messages go to an application
    /// callback (embedded): never replayed to the client as history.
    callback_streams: VecSet,
}

/// Per-session state, owned by the reader task.
struct Session {
    node: Arc<Node>,
    handle: Arc<SessionHandle>,
    request: RequestInfo,
    identifiers: String,
    cstate: StateMap,
    subscriptions: VecMap<Arc<str>, Subscription>,
    /// Set by the application's `disconnect` flag: stop reading commands.
    closing: bool,
    /// See [`crate::controller::Controller::stateful`].
    stateful: bool,
    /// While a subscribe with a `history` request is applied: its new
    /// streams hold their live messages until the history is replayed.
    hold_new_streams: bool,
    /// Messages on callback streams, once the first one is subscribed.
    app_messages: Option<mpsc::UnboundedReceiver<StreamMessage>>,
    /// A stateful application's session restored here (the previous sid):
    /// its connection object is not rebuilt yet. Until it is, every call
    /// carries what rebuilds it ([`Session::rebuild_env`]).
    rebuild_from: Option<String>,
    /// The background store of this session's state, if one is going on.
    storing: Option<tokio::task::JoinHandle<()>>,
    /// How far [`Session::finish`] got; the rest is done on drop (a panic).
    disconnect_queued: bool,
    finished: bool,
    /// This session's place in the node's count of open sessions, given
    /// back by [`Node::close_session`].
    open: Option<TaskTrackerToken>,
    /// Touches this session's presence records while it is open (once it
    /// joined a presence set).
    presence_alive: Option<presence::KeepAlive>,
    /// Whether the application wants this session's Disconnect call: its
    /// connect or one of its subscriptions went to the application
    /// (anycable-go's `disconnectInterest`; see [`Session::owes_disconnect`]).
    disconnect_interest: bool,
}

/// A session's state as the broker keeps it for restore.
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct StoredSession {
    /// What the client authenticated with ([`credentials`]): a session is
    /// only restored for a request that brings the same.
    #[serde(default)]
    credentials: String,
    identifiers: String,
    cstate: StateMap,
    /// identifier → (streams, istate)
    subscriptions: HashMap<String, (Vec<String>, StateMap)>,
    /// Some stream's messages went to an application callback (embedded
    /// `stream_from` with a block): only `subscribed` can register that
    /// again, so such a session is not restored.
    #[serde(default)]
    callback_streams: bool,
    /// Written when the session closed (not while it ran): identifier →
    /// stream → the last (epoch, offset) it sent there. A restore replays
    /// what came after, before going live (see [`Session::restored`]).
    #[serde(default)]
    positions: HashMap<String, HashMap<String, (String, u64)>>,
    /// When it closed (Unix seconds; 0 while it ran): a stream it had no
    /// message on yet is replayed from then.
    #[serde(default)]
    closed_at: u64,
    /// Whether its end owes the application a Disconnect call (see
    /// [`Session::owes_disconnect`]); a session stored before this was
    /// kept owes it.
    #[serde(default = "owed")]
    disconnect_interest: bool,
}

fn owed() -> bool {
    true
}

/// The key of a stateful call's `env.cstate` that names the previous session
/// whose connection object the call rebuilds (or, on the same node, adopts);
/// the call then carries the identifiers and every subscription's state.
pub const RESTORED_FROM: &str = "$restored_from";
/// The key of a stateful call's `env.cstate` that asks the application for
/// the channel's state (`istate`) in its reply: the session may be restored.
pub const RESTORABLE: &str = "$restorable";

/// A fingerprint of what a client authenticates with: the request headers
/// the application is given (`headers`, e.g. the cookie), without the peer's
/// address, and the query's parameters (a token in `?jid=`). A sid presented with other credentials (another user, a
/// logged-out browser) is not restored: the client connects afresh.
fn credentials(request: &RequestInfo) -> String {
    use sha2::Digest;
    let mut headers: Vec<_> = request
        .headers
        .iter()
        .filter(|(name, _)| name.as_str() != "REMOTE_ADDR")
        .collect();
    headers.sort();
    let mut hash = sha2::Sha256::new();
    for (name, value) in headers {
        hash.update(name.as_bytes());
        hash.update([0]);
        hash.update(value.as_bytes());
        hash.update([0]);
    }
    // The query too (a token in `?jid=` or the app's own parameter), without
    // the restore sid and the ping parameters: a sid presented without the
    // token it was made with connects afresh.
    let query = request.url.split_once('?').map_or("", |(_, q)| q);
    let mut params: Vec<_> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .filter(|p| {
            let name = p.split_once('=').map_or(*p, |(n, _)| n);
            !matches!(name, "sid" | "pi" | "ptp")
        })
        .collect();
    params.sort();
    for param in params {
        hash.update(b"?");
        hash.update(param.as_bytes());
        hash.update([0]);
    }
    hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// What the reader waits for.
enum Event {
    Client(Option<Result<Incoming, ReadError>>),
    App(StreamMessage),
    WriterDone,
    /// Time for this session's own ping.
    Ping,
    /// A ping went unanswered for `pong_timeout`.
    NoPong,
}

/// A session's own pings (see [`SessionHandle::pings_itself`]): checked
/// against anycable-go 1.6 node/session.go (`schedulePing`, `keepalive`,
/// `handleNoPong`) and cli/session_options.go (`pi`, `ptp`).
struct Pings {
    ticker: Option<tokio::time::Interval>,
    precision: TimestampPrecision,
    pong_timeout: Option<std::time::Duration>,
    /// Set by a ping when the client had been silent; any client message
    /// clears it. Boxed, and only while set: a timer inline made the
    /// reader's future (what an idle connection holds) larger for every
    /// session, with or without pings of its own.
    pong_deadline: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl Pings {
    /// The session's own pings, if it needs them (a `?pi=` or `?ptp=`, or
    /// a `pong_timeout` on the extended protocol); else the node's.
    fn new(node: &Node, request: &RequestInfo) -> Option<Pings> {
        let pong_timeout = (request.extended && node.config.pong_timeout > 0)
            .then(|| std::time::Duration::from_secs(node.config.pong_timeout));
        if request.ping_interval.is_none()
            && request.ping_precision.is_none()
            && pong_timeout.is_none()
        {
            return None;
        }
        let every = request.ping_interval.unwrap_or(node.config.ping_interval);
        let ticker = (every > 0).then(|| {
            let every = std::time::Duration::from_secs(every);
            let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker
        });
        Some(Pings {
            ticker,
            precision: request
                .ping_precision
                .unwrap_or(node.config.ping_timestamp_precision),
            pong_timeout,
            pong_deadline: None,
        })
    }
}

impl Pings {
    /// A ping went out: the client has `pong_timeout` to say anything,
    /// unless it was already counting.
    fn ping_sent(&mut self) {
        if let (Some(timeout), None) = (self.pong_timeout, &self.pong_deadline) {
            self.pong_deadline = Some(Box::pin(tokio::time::sleep(timeout)));
        }
    }

    /// The client said something: that answers the ping.
    fn answered(&mut self) {
        self.pong_deadline = None;
    }

    fn poll_event(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Event> {
        use std::task::Poll;
        if let Some(deadline) = &mut self.pong_deadline
            && deadline.as_mut().poll(cx).is_ready()
        {
            return Poll::Ready(Event::NoPong);
        }
        if let Some(ticker) = &mut self.ticker
            && ticker.poll_tick(cx).is_ready()
        {
            return Poll::Ready(Event::Ping);
        }
        Poll::Pending
    }
}

/// The next event of a session's own pings, or never.
async fn next_ping(pings: &mut Option<Pings>) -> Event {
    match pings {
        Some(pings) => std::future::poll_fn(|cx| pings.poll_event(cx)).await,
        None => std::future::pending().await,
    }
}

/// The next message for the application, or never when there is no queue.
async fn next_app_message(
    queue: &mut Option<mpsc::UnboundedReceiver<StreamMessage>>,
) -> StreamMessage {
    match queue {
        Some(queue) => match queue.recv().await {
            Some(message) => message,
            None => std::future::pending().await,
        },
        None => std::future::pending().await,
    }
}

/// The stored session a client names (`restore_sid`), if it may be restored
/// here: an extended-protocol client, a broker keeping sessions, the session
/// still stored, made with the same credentials and without callback
/// streams. `sid` is the new session's (for the log).
pub(crate) async fn stored_session(
    node: &Node,
    request: &RequestInfo,
    sid: &str,
) -> Option<(String, StoredSession)> {
    let (Some(broker), Some(previous)) = (
        node.broker
            .clone()
            .filter(|_| request.extended && node.config.sessions_ttl > 0),
        request.restore_sid.clone(),
    ) else {
        return None;
    };
    let raw = match broker.session(&previous).await {
        Ok(Some(state)) => state,
        Ok(None) => {
            debug!(sid = %sid, previous = %compact(previous.as_str()), "no session to restore (unknown or expired); connecting");
            return None;
        }
        Err(e) => {
            client_log!(WARN, sid = %sid, error = %e, "session not restored (broker unavailable); connecting");
            return None;
        }
    };
    let Ok(stored) = serde_json::from_str::<StoredSession>(&raw) else {
        client_log!(WARN, sid = %sid, "stored session unreadable; connecting");
        return None;
    };
    if stored.credentials != credentials(request) {
        debug!(sid = %sid, "the stored session was made with other credentials; connecting");
        return None;
    }
    if stored.callback_streams {
        debug!(sid = %sid, "the stored session had callback streams (only `subscribed` registers them); connecting");
        return None;
    }
    // Taken out of the broker, so it is restored once: a second client with
    // the same sid (or the same one twice) connects afresh.
    match broker.take_session(&previous, &raw).await {
        Ok(true) => Some((previous, stored)),
        Ok(false) => {
            debug!(sid = %sid, previous = %compact(previous.as_str()), "the stored session was just restored or rewritten; connecting");
            None
        }
        Err(e) => {
            client_log!(WARN, sid = %sid, error = %e, "session not restored (broker unavailable); connecting");
            None
        }
    }
}

/// History entries of `stream` as the frames of the subscription
/// `identifier`, with their positions.
fn positioned_frames(
    identifier: &str,
    stream: &str,
    entries: Vec<crate::broker::Entry>,
) -> Vec<(Position, Utf8Bytes)> {
    entries
        .into_iter()
        .map(|e| {
            let frame = protocol::data_message_positioned(
                identifier,
                &e.data,
                protocol::is_json(&e.data),
                stream,
                &e.epoch,
                e.offset,
            );
            let position = Position {
                epoch: e.epoch,
                offset: e.offset,
            };
            (position, Utf8Bytes::from(frame))
        })
        .collect()
}

/// A connection the application accepted before the upgrade, whose socket
/// never came: the application still gets its Disconnect (queued before the
/// reservation is given back, as a session's is).
pub(crate) async fn abandon(
    node: &Node,
    reservation: Reservation,
    identifiers: String,
    request: RequestInfo,
) {
    let request = DisconnectRequest {
        identifiers,
        subscriptions: Vec::new(),
        env: Env {
            url: request.url,
            headers: request.headers,
            ..Default::default()
        },
    };
    node.enqueue_disconnect(reservation.sid().into(), request)
        .await;
    drop(reservation);
}

/// Serves one upgraded WebSocket until either side closes it. `connected`
/// is the application's answer when it was asked before the upgrade (a
/// stateful controller); otherwise the session asks it now.
pub(crate) fn run<S>(
    node: Arc<Node>,
    ws: S,
    request: RequestInfo,
    reservation: Reservation,
    connected: Option<Result<ConnectReply, CallError>>,
    restored: Option<(String, StoredSession)>,
) -> impl std::future::Future<Output = ()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // An async fn keeps its arguments in its future for the connection's
    // whole life, even once they are moved out (the socket alone is a few
    // hundred bytes): they travel boxed, and the box is gone once unpacked.
    serve(
        node,
        Box::new(Start {
            ws,
            request,
            reservation,
            connected,
            restored,
        }),
    )
}

/// What [`run`] starts a session from.
struct Start<S> {
    /// The upgraded socket, where the WebSocket's frames begin.
    ws: S,
    request: RequestInfo,
    reservation: Reservation,
    connected: Option<Result<ConnectReply, CallError>>,
    restored: Option<(String, StoredSession)>,
}

#[allow(clippy::boxed_local)] // taking the box is the point: it is freed on return
fn unbox<T>(boxed: Box<T>) -> T {
    *boxed
}

/// A session started: its state, its socket's reading half, its writer
/// task, and whether it is connected.
type Started<S> = (
    Session,
    FrameReader<ReadHalf<S>>,
    tokio::task::JoinHandle<()>,
    bool,
);

/// Starts a session (see [`serve`]): its writer, then its connect (or
/// restore).
async fn begin<S>(node: &Arc<Node>, start: Box<Start<S>>) -> Started<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // Unpacked by a function of its own, so the box is freed now (a
    // binding that is moved out of is only freed at the end of its scope).
    let Start {
        ws,
        request,
        reservation,
        connected,
        restored,
    } = unbox(start);
    let (handle, queue, open) = node.open_session(reservation);
    if request.extended {
        handle.track_positions();
    }
    let config = &node.config;
    let (stream, sink) = websocket::split(
        ws,
        config.max_message_size,
        config.read_buffer_size,
        config.write_buffer_size,
    );
    let writer = tokio::spawn(write_loop(
        sink,
        queue,
        handle.clone(),
        node.config.ws_write_timeout(),
    ));
    let mut session = Session {
        node: node.clone(),
        handle: handle.clone(),
        request,
        identifiers: String::new(),
        cstate: StateMap::new(),
        subscriptions: VecMap::new(),
        closing: false,
        stateful: node.controller.stateful(),
        hold_new_streams: false,
        rebuild_from: None,
        storing: None,
        app_messages: None,
        disconnect_queued: false,
        finished: false,
        open: Some(open),
        presence_alive: None,
        disconnect_interest: false,
    };

    // A session that arrives during shutdown is only told to come back (one
    // the application already accepted is still disconnected from it).
    let connected = match (restored, connected) {
        (Some((previous, stored)), _) => {
            Box::pin(session.restored(previous, stored)).await;
            true
        }
        (None, Some(reply)) => session.connected(reply),
        (None, None) if node.is_shutting_down() => false,
        (None, None) => Box::pin(session.restore()).await || Box::pin(session.connect()).await,
    };
    if connected {
        session.store_soon();
    }
    (session, stream, writer, connected)
}

async fn serve<S>(node: Arc<Node>, start: Box<Start<S>>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // Started in a boxed future of its own: what the start takes (the
    // start-up arguments, the connect's reply, a stored session) is not
    // kept in this one, which lives as long as the connection.
    let (mut session, mut stream, mut writer, connected) = Box::pin(begin(&node, start)).await;
    let handle = session.handle.clone();
    let mut writer_done = false;
    let mut pings = Pings::new(&node, &session.request);
    if pings.is_some() {
        handle.ping_by_itself();
    }
    // What a command, a callback message, the connect and the finish need
    // while they run is boxed (`Box::pin`): this task's future is what an
    // idle connection holds for its whole life, and an async fn's future is
    // as large as its largest await (about 3 KiB here before).
    if connected {
        // An urgent close (too slow, oversized message) ends reading too: a
        // client flooding pings must not make more replies while it closes.
        while handle.close_request().is_none() {
            let event = tokio::select! {
                message = stream.next() => Event::Client(message),
                message = next_app_message(&mut session.app_messages) => Event::App(message),
                _ = &mut writer => Event::WriterDone,
                event = next_ping(&mut pings) => event,
            };
            let message = match event {
                Event::Client(message) => message,
                Event::App(message) => {
                    handle.app_message_taken(&message);
                    Box::pin(session.stream_message(message)).await;
                    if session.closing {
                        break;
                    }
                    continue;
                }
                Event::WriterDone => {
                    writer_done = true;
                    break;
                }
                Event::Ping => {
                    if let Some(pings) = &mut pings {
                        handle.send(pings.precision.ping_now().into());
                        pings.ping_sent();
                    }
                    continue;
                }
                Event::NoPong => {
                    client_log!(INFO, sid = %handle.sid, "no pong within pong_timeout; disconnecting");
                    handle.close(CloseRequest::disconnect(DisconnectReason::NoPong, true));
                    break;
                }
            };
            // Any message from the client answers the ping.
            if let Some(pings) = &mut pings {
                pings.answered();
            }
            match message {
                Some(Ok(Incoming::Text(text))) => {
                    node.metrics.client_messages.inc();
                    node.metrics.bytes_in.inc_by(text.len() as u64);
                    Box::pin(session.handle_text(text)).await;
                    if session.closing {
                        break;
                    }
                }
                Some(Ok(Incoming::Binary(bytes))) => {
                    node.metrics.client_messages.inc();
                    node.metrics.client_message_failures.inc();
                    node.metrics.bytes_in.inc_by(bytes.len() as u64);
                    client_log!(WARN, sid = %handle.sid, len = bytes.len(), "binary frame ignored: the protocol is JSON text");
                }
                Some(Ok(Incoming::Close(code))) => {
                    // The client closed first: its close is answered with
                    // its code (RFC 6455 §5.5.1) and nothing after it.
                    handle.close_urgently(CloseRequest::silent(code.unwrap_or(1000)));
                    break;
                }
                None => break,
                Some(Ok(Incoming::Ping(payload))) => {
                    // The pong counts against the same budget as the data
                    // frames.
                    if !handle.send_pong(payload) {
                        handle.too_slow("control replies over ws_max_pending_size");
                        break;
                    }
                }
                Some(Ok(Incoming::Pong)) => {} // pongs need no answer
                Some(Err(ReadError::TooLarge { size, max })) => {
                    node.metrics.client_message_failures.inc();
                    client_log!(WARN, sid = %handle.sid, size, max, "client message too large, closing with 1009");
                    handle.close_urgently(CloseRequest::silent(1009));
                    break;
                }
                Some(Err(ReadError::Violation { code, why })) => {
                    node.metrics.client_message_failures.inc();
                    client_log!(WARN, sid = %handle.sid, error = why, code, "protocol violation, closing");
                    handle.close_urgently(CloseRequest::silent(code));
                    break;
                }
                Some(Err(ReadError::Io(e))) => {
                    debug!(sid = %handle.sid, error = %e, "socket error");
                    break;
                }
            }
        }
    }

    // The reader is done: let the writer flush what is queued and say goodbye.
    handle.close(CloseRequest::silent(1000));
    if !writer_done
        && Box::pin(tokio::time::timeout(CLOSE_GRACE * 2, &mut writer))
            .await
            .is_err()
    {
        writer.abort();
    }
    drop(stream);
    Box::pin(session.finish(connected)).await;
}

impl Session {
    fn sid(&self) -> &str {
        &self.handle.sid
    }

    /// [`Session::handle_frame`] of a frame it owns (the frame lives in the
    /// boxed command's future, not in the reader's).
    async fn handle_text(&mut self, text: Utf8Bytes) {
        self.handle_frame(text.as_str()).await
    }

    fn env(&self, istate: StateMap) -> Env {
        Env {
            url: self.request.url.clone(),
            headers: self.request.headers.clone(),
            cstate: self.cstate.clone(),
            istate,
        }
    }

    fn transmit(&self, frame: impl Into<Utf8Bytes>) {
        self.handle.send(frame.into());
    }

    /// Whether this session's state is kept for restore: an extended-protocol
    /// client, with a broker keeping sessions.
    fn restorable(&self) -> bool {
        self.handle.tracks_positions()
            && self.node.broker.is_some()
            && self.node.config.sessions_ttl > 0
    }

    /// Keeps this session's state in the broker under its sid (after it
    /// connects, after its subscriptions change, when it closes), so a
    /// client coming back with the sid is restored without the application.
    ///
    /// While the session runs, stores go on in the background, one after
    /// the other (the reader never waits for Redis); the last one, at the
    /// close, drops those not yet sent and is awaited.
    fn store_soon(&mut self) {
        let Some(state) = self.stored_state(false) else {
            return;
        };
        let (broker, sid) = (self.node.broker.clone(), self.handle.sid.clone());
        let previous = self.storing.take();
        self.storing = Some(tokio::spawn(async move {
            if let Some(previous) = previous {
                let _ = previous.await;
            }
            if let Some(broker) = broker
                && let Err(e) = broker.store_session(&sid, &state).await
            {
                client_log!(WARN, sid = %sid, error = %e, "session state not stored (it cannot be restored)");
            }
        }));
    }

    /// The last store, at the close (see [`Session::store_soon`]).
    async fn store(&mut self) {
        if let Some(previous) = self.storing.take() {
            previous.abort();
        }
        if self.closing || self.handle.is_final() {
            // Closed for good (a kick, the application's disconnect): what
            // was stored while it ran is taken back, so no one restores it.
            self.forget_stored().await;
            return;
        }
        let (Some(state), Some(broker)) = (self.stored_state(true), self.node.broker.clone())
        else {
            return;
        };
        if let Err(e) = broker.store_session(self.sid(), &state).await {
            client_log!(WARN, sid = %self.sid(), error = %e, "session state not stored (it cannot be restored)");
        }
    }

    /// Deletes this session's stored state, if any.
    async fn forget_stored(&self) {
        let Some(broker) = self.node.broker.clone() else {
            return;
        };
        if !self.restorable() {
            return;
        }
        let result = match broker.session(self.sid()).await {
            Ok(Some(state)) => broker.take_session(self.sid(), &state).await.map(|_| ()),
            Ok(None) => Ok(()),
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            debug!(sid = %self.sid(), error = %e, "stored session not deleted (it expires with sessions_ttl)");
        }
    }

    /// This session's state as stored for restore, if it is restorable;
    /// `closed`: with where it is in its streams (only then exact: a
    /// position stored earlier would replay what the client already has).
    fn stored_state(&self, closed: bool) -> Option<String> {
        if !self.restorable() {
            return None;
        }
        let mut positions: HashMap<String, HashMap<String, (String, u64)>> = HashMap::new();
        if closed {
            for (identifier, stream, at) in self.handle.positions() {
                positions
                    .entry(identifier.to_string())
                    .or_default()
                    .insert(stream, (at.epoch, at.offset));
            }
        }
        let stored = StoredSession {
            credentials: credentials(&self.request),
            identifiers: self.identifiers.clone(),
            cstate: self.cstate.clone(),
            subscriptions: self
                .subscriptions
                .iter()
                .map(|(id, sub)| {
                    let streams = sub.streams.iter().cloned().collect();
                    (id.to_string(), (streams, sub.istate.to_state_map()))
                })
                .collect(),
            callback_streams: self
                .subscriptions
                .values()
                .any(|sub| !sub.callback_streams.is_empty()),
            positions,
            // From the first close asked for (nothing positioned reached
            // the client after it, however long the close then took), a
            // second early, as history is kept by the second: only streams
            // this session sent nothing on are replayed from it.
            closed_at: if closed {
                self.handle
                    .closed_at()
                    .unwrap_or_else(crate::broker::now)
                    .saturating_sub(1)
                    .max(1)
            } else {
                0
            },
            disconnect_interest: self.disconnect_interest,
        };
        Some(serde_json::to_string(&stored).expect("string maps always serialize"))
    }

    /// Restores the session the client names (`restore_sid`), if the broker
    /// still has it (see [`stored_session`]). Returns whether it was
    /// restored; if not, the client is connected as usual.
    async fn restore(&mut self) -> bool {
        match stored_session(&self.node, &self.request, self.sid()).await {
            Some((previous, stored)) => {
                self.restored(previous, stored).await;
                true
            }
            None => false,
        }
    }

    /// Takes a stored session's identifiers, state, subscriptions and their
    /// streams, and sends a welcome with `restored: true`, with no call to the
    /// application (checked against anycable-go 1.6 node/node.go
    /// `TryRestoreSession`). A stateful application's connection object is
    /// rebuilt when it is next needed ([`Session::rebuild_from`]).
    ///
    /// A session stored at its close also knows where it was in each
    /// stream: what was broadcast since is replayed here, before the
    /// streams go live (their live messages are held meanwhile, then sent,
    /// none twice). The client's own `history` request, which @anycable/core
    /// sends on the restored welcome, then finds it all sent. Without this,
    /// live messages sent before that request reached the client first and
    /// the history before them was lost (see docs/ARCHITECTURE.md, "Session
    /// restore").
    async fn restored(&mut self, previous: String, stored: StoredSession) {
        self.identifiers = stored.identifiers;
        self.cstate = stored.cstate;
        let catch_up = stored.closed_at > 0;
        for (identifier, (streams, istate)) in stored.subscriptions {
            let identifier: Arc<str> = Arc::from(identifier);
            for stream in &streams {
                if catch_up {
                    self.handle.hold(&identifier, stream);
                }
                self.node
                    .hub
                    .subscribe(stream, &identifier, &self.handle, Via::Socket);
            }
            let streams = streams.into_iter().collect();
            self.subscriptions.insert(
                identifier,
                Subscription {
                    streams,
                    istate: istate.into(),
                    ..Default::default()
                },
            );
        }
        // As the stored session owed it (anycable-go keeps the flag in its
        // session cache too).
        self.disconnect_interest = stored.disconnect_interest;
        if self.stateful {
            // Closed on this node: its connection object is still here,
            // and its Disconnect is now this session's.
            let claimed = self.node.claim_parked(&previous);
            debug!(sid = %self.sid(), here = claimed.is_some(), "connection object to be rebuilt on the next call");
            self.rebuild_from = Some(claimed.flatten().unwrap_or_else(|| previous.clone()));
        }
        let ids: Vec<&str> = self.subscriptions.keys().map(|k| &k[..]).collect();
        self.transmit(protocol::restored_welcome(self.sid(), &ids));
        self.handle.mark_welcomed();
        self.node
            .register_identifiers(&self.identifiers, &self.handle);
        debug!(sid = %self.sid(), previous = %compact(previous.as_str()), subscriptions = ids.len(), "session restored");
        if catch_up {
            self.catch_up(&stored.positions, stored.closed_at).await;
        }
    }

    /// Replays, per restored subscription and stream, what was broadcast
    /// after the stored position (or, on a stream it had no message on yet,
    /// since it closed), then releases the held live messages. A history
    /// the broker cannot give (evicted, another epoch, the broker away) is
    /// skipped: the stream goes live, and the client's own `history`
    /// request gets its answer (`reject_history`).
    async fn catch_up(
        &mut self,
        positions: &HashMap<String, HashMap<String, (String, u64)>>,
        closed_at: u64,
    ) {
        let Some(broker) = self.node.broker.clone() else {
            return;
        };
        let streams: Vec<(Arc<str>, String)> = self
            .subscriptions
            .iter()
            .flat_map(|(id, sub)| sub.streams.iter().map(|s| (id.clone(), s.clone())))
            .collect();
        let mut replayed = 0;
        for (identifier, stream) in streams {
            let at = positions.get(&identifier[..]).and_then(|p| p.get(&stream));
            let entries = match at {
                Some((epoch, offset)) => broker.history_from(&stream, epoch, *offset).await,
                None => broker.history_since(&stream, closed_at).await,
            };
            let frames = match entries {
                Ok(entries) => positioned_frames(&identifier, &stream, entries),
                Err(e) => {
                    debug!(sid = %self.sid(), stream = %compact(stream.as_str()), error = %e, "restore: no history to catch up with; live from now");
                    Vec::new()
                }
            };
            replayed += self.handle.replay(&identifier, &stream, frames);
        }
        debug!(sid = %self.sid(), replayed, "restore: caught up");
    }

    /// What a stateful call carries: nothing while the application's
    /// connection object lives; the identifiers, the request and every
    /// subscription's state (as a Disconnect's `istate`) while it is to be
    /// rebuilt; `RESTORABLE` when the channel's state must come back.
    fn stateful_env(&self) -> (String, Env) {
        let mut cstate = StateMap::new();
        if self.restorable() {
            cstate.insert(RESTORABLE.to_owned(), "1".to_owned());
        }
        let Some(previous) = &self.rebuild_from else {
            let env = Env {
                cstate,
                ..Env::default()
            };
            return (String::new(), env);
        };
        cstate.insert(RESTORED_FROM.to_owned(), previous.clone());
        let istate = self
            .subscriptions
            .iter()
            .map(|(id, sub)| {
                let state =
                    serde_json::to_string(&sub.istate).expect("string maps always serialize");
                (id.to_string(), state)
            })
            .collect();
        let env = Env {
            url: self.request.url.clone(),
            headers: self.request.headers.clone(),
            cstate,
            istate,
        };
        (self.identifiers.clone(), env)
    }

    /// Authenticates the connection. Returns whether it was accepted.
    async fn connect(&mut self) -> bool {
        let env = self.env(StateMap::new());
        let reply = self.node.controller.connect(self.sid(), env).await;
        self.connected(reply)
    }

    /// Applies the application's answer to `connect`. Returns whether the
    /// connection was accepted.
    fn connected(&mut self, reply: Result<ConnectReply, CallError>) -> bool {
        match reply {
            Ok(reply) if reply.status == Status::Success => {
                self.disconnect_interest |= reply.disconnect_interest;
                self.identifiers = reply.identifiers;
                merge_state(&mut self.cstate, reply.state.cstate);
                if self.stateful {
                    // The application sent its own welcome (with our
                    // session id, which it was given): delivered as it is.
                    for frame in reply.transmissions {
                        self.transmit(frame);
                    }
                } else {
                    self.welcome(reply.transmissions);
                }
                self.handle.mark_welcomed();
                self.node
                    .register_identifiers(&self.identifiers, &self.handle);
                debug!(sid = %self.sid(), identifiers = %compact(self.identifiers.as_str()), "connected");
                true
            }
            Ok(reply) => {
                let rejected = reply.status == Status::Failure;
                if rejected {
                    self.node.metrics.failed_auths.inc();
                    client_log!(INFO, sid = %self.sid(), "connection rejected by the application (unauthorized)");
                } else {
                    client_log!(WARN, sid = %self.sid(), error = %compact(reply.error_msg.as_str()), "connect failed in the application");
                }
                // A stateful application that refused the connection closed
                // it itself, saying why as it saw fit.
                let mut sent_disconnect = self.stateful && rejected;
                for frame in reply.transmissions {
                    sent_disconnect |= !self.stateful
                        && protocol::transmission_type(&frame).as_deref() == Some("disconnect");
                    self.transmit(frame);
                }
                let (reason, reconnect) = if rejected {
                    (DisconnectReason::Unauthorized, false)
                } else {
                    (DisconnectReason::ServerRestart, true)
                };
                if sent_disconnect {
                    self.handle.close(CloseRequest::silent(1000));
                } else {
                    self.handle
                        .close(CloseRequest::disconnect(reason, reconnect));
                }
                false
            }
            Err(e) => {
                client_log!(WARN, sid = %self.sid(), error = %compact(e.to_string()), "connect call failed; asking the client to reconnect");
                self.handle.close(CloseRequest::disconnect(
                    DisconnectReason::ServerRestart,
                    true,
                ));
                false
            }
        }
    }

    /// A stateless application's welcome (AnyCable's contract: it may send
    /// one or not) gains our session id; without one, ours is sent.
    fn welcome(&self, transmissions: Vec<String>) {
        let mut welcomed = false;
        for frame in transmissions {
            if protocol::transmission_type(&frame).as_deref() == Some("welcome") {
                welcomed = true;
                self.transmit(protocol::welcome(self.sid()));
            } else {
                self.transmit(frame);
            }
        }
        if !welcomed {
            self.transmit(protocol::welcome(self.sid()));
        }
    }

    async fn handle_frame(&mut self, text: &str) {
        let command = match protocol::decode_client_frame(text) {
            Ok(c) => c,
            Err(e) => {
                self.node.metrics.client_message_failures.inc();
                client_log!(WARN, sid = %self.sid(), error = %compact(e.to_string()), "client frame ignored");
                return;
            }
        };
        match command {
            ClientCommand::Subscribe {
                identifier,
                history,
            } => {
                let history = history.filter(|h| !h.is_empty() && self.serves_history());
                self.hold_new_streams = history.is_some();
                self.subscribe(identifier.clone()).await;
                self.hold_new_streams = false;
                self.store_soon();
                if let Some(history) = history
                    && self.subscriptions.contains_key(identifier.as_str())
                {
                    self.history(&identifier, history).await;
                }
            }
            ClientCommand::Unsubscribe { identifier } => {
                self.unsubscribe(identifier).await;
                self.store_soon();
            }
            ClientCommand::Message { identifier, data } => self.perform(identifier, data).await,
            ClientCommand::Ping => self.transmit(protocol::pong()),
            ClientCommand::Pong => {}
            ClientCommand::History {
                identifier,
                history,
            } => match history.filter(|h| !h.is_empty() && self.serves_history()) {
                Some(history) => self.history(&identifier, history).await,
                None => {
                    debug!(sid = %self.sid(), identifier = %compact(&identifier[..]), "history without a request, on the base protocol or without a broker; rejected");
                    self.transmit(protocol::reject_history(&identifier));
                }
            },
            ClientCommand::Join {
                identifier,
                presence,
            } => self.presence_join(&identifier, presence).await,
            ClientCommand::Leave { identifier } => {
                if let Some((broker, stream)) = self.presence_stream(&identifier) {
                    presence::leave(&self.node, &broker, self.sid(), &stream).await;
                }
            }
            ClientCommand::Presence {
                identifier,
                return_records,
            } => {
                if let Some((broker, stream)) = self.presence_stream(&identifier) {
                    let frame = presence::info(&broker, &identifier, &stream, return_records).await;
                    self.transmit(frame);
                }
            }
            ClientCommand::Whisper { identifier, data } => self.whisper(&identifier, &data),
        }
    }

    /// The broker and presence stream of a subscription (its istate's
    /// `$p`), on a node with a broker, whatever the client's protocol (as
    /// anycable-go 1.6.16 node/node.go `HandleCommand` and `Presence`: its
    /// base JSON decoder reads `presence` too); none (logged) otherwise.
    fn presence_stream(&self, identifier: &str) -> Option<(Arc<dyn Broker>, String)> {
        let stream = self
            .subscriptions
            .get(identifier)
            .and_then(|sub| sub.istate.get(presence::PRESENCE_STREAM_STATE))
            .filter(|s| !s.is_empty());
        match (self.node.broker.clone(), stream) {
            (Some(broker), Some(stream)) => Some((broker, stream.clone())),
            _ => {
                self.node.metrics.client_message_failures.inc();
                client_log!(WARN, sid = %self.sid(), identifier = %compact(identifier), "presence command without a presence stream (not subscribed, no $p from the application, or no broker); ignored");
                None
            }
        }
    }

    async fn presence_join(&mut self, identifier: &str, arg: Option<protocol::PresenceArg>) {
        let Some((broker, stream)) = self.presence_stream(identifier) else {
            return;
        };
        match presence::join(&self.node, &broker, self.sid(), &stream, arg).await {
            Ok(()) => self.keep_presence_alive(broker),
            Err(e) => {
                self.node.metrics.client_message_failures.inc();
                client_log!(WARN, sid = %self.sid(), identifier = %compact(identifier), error = %compact(e), "presence join refused");
            }
        }
    }

    fn keep_presence_alive(&mut self, broker: Arc<dyn Broker>) {
        if self.presence_alive.is_none() {
            self.presence_alive = Some(presence::keep_alive(broker, self.sid().to_owned()));
        }
    }

    /// The application's say on presence in a command reply (the RPC
    /// contract's `presence`), after the reply's istate is applied, on the
    /// subscription's presence stream (`$p`), whatever the client's
    /// protocol (checked against anycable-go 1.6.16 node/node.go
    /// `handleCommandReply`, `handlePresenceReply`).
    async fn app_presence(&mut self, identifier: &str, presence: Option<AppPresence>) {
        let Some(presence) = presence else {
            return;
        };
        let stream = self
            .subscriptions
            .get(identifier)
            .and_then(|sub| sub.istate.get(presence::PRESENCE_STREAM_STATE))
            .filter(|s| !s.is_empty())
            .cloned();
        let (Some(stream), Some(broker)) = (stream, self.node.broker.clone()) else {
            client_log!(WARN, sid = %self.sid(), identifier = %compact(identifier), "presence from the application without a presence stream (not subscribed, no $p) or without a broker; ignored");
            return;
        };
        match presence::apply(&self.node, &broker, self.sid(), &stream, presence).await {
            Ok(true) => self.keep_presence_alive(broker),
            Ok(false) => {}
            Err(e) => {
                client_log!(WARN, sid = %self.sid(), identifier = %compact(identifier), error = %compact(e), "presence from the application refused");
            }
        }
    }

    /// Whether this session can be given history: an extended-protocol
    /// client on a node with a broker.
    fn serves_history(&self) -> bool {
        self.handle.tracks_positions() && self.node.broker.is_some()
    }

    /// Replays what the client missed on the streams of one subscription,
    /// then `confirm_history`; `reject_history` when any stream's history
    /// cannot be given (unknown epoch, evicted, the broker away). Live
    /// messages of those streams are held meanwhile and sent after the
    /// history, none twice (checked against anycable-go 1.6 node/node.go
    /// `History`: positions first, else `since`).
    async fn history(&mut self, identifier: &str, request: HistoryRequest) {
        let (Some(broker), Some(sub)) =
            (self.node.broker.clone(), self.subscriptions.get(identifier))
        else {
            debug!(sid = %self.sid(), identifier = %compact(identifier), "history for a channel not subscribed; rejected");
            self.transmit(protocol::reject_history(identifier));
            return;
        };
        let streams: Vec<String> = sub
            .streams
            .iter()
            .filter(|s| !sub.callback_streams.contains(s))
            .cloned()
            .collect();
        let identifier: Arc<str> = match self.subscriptions.get_key_value(identifier) {
            Some((key, _)) => key.clone(),
            None => Arc::from(identifier),
        };
        let identifier = &identifier;
        for stream in &streams {
            self.handle.hold(identifier, stream);
        }
        let mut found = Vec::with_capacity(streams.len());
        let mut failure = None;
        for stream in &streams {
            let entries = match request.streams.get(stream) {
                Some(at) => broker.history_from(stream, &at.epoch, at.offset).await,
                None if request.since > 0 => broker.history_since(stream, request.since).await,
                None => Ok(Vec::new()),
            };
            match entries {
                Ok(entries) => found.push(entries),
                Err(e) => {
                    failure = Some((stream, e));
                    break;
                }
            }
        }
        let mut replayed = 0;
        for (n, stream) in streams.iter().enumerate() {
            let frames = match (&failure, found.get_mut(n)) {
                (None, Some(entries)) => {
                    positioned_frames(identifier, stream, std::mem::take(entries))
                }
                _ => Vec::new(),
            };
            replayed += self.handle.replay(identifier, stream, frames);
        }
        match failure {
            None => {
                debug!(sid = %self.sid(), identifier = %compact(&identifier[..]), replayed, "history replayed");
                self.transmit(protocol::confirm_history(identifier));
            }
            Some((stream, e)) => {
                client_log!(INFO, sid = %self.sid(), stream = %compact(stream.as_str()), error = %e, "history rejected");
                self.transmit(protocol::reject_history(identifier));
            }
        }
    }

    /// A whisper goes to the other subscribers of the stream the
    /// subscription may whisper on (its `$w` state, set by the fast lane or
    /// the application), on every node (the bus), never back to the sender,
    /// straight to their sockets (no stream callback sees it) (checked
    /// against anycable-go 1.6 node/node.go `Whisper`).
    fn whisper(&self, identifier: &str, data: &str) {
        let stream = self
            .subscriptions
            .get(identifier)
            .and_then(|sub| sub.istate.get(crate::fastlane::WHISPER_STATE));
        let Some(stream) = stream else {
            self.node.metrics.client_message_failures.inc();
            client_log!(WARN, sid = %self.sid(), identifier = %compact(identifier), "whisper on a subscription that may not whisper; ignored");
            return;
        };
        self.node.spread(crate::broadcast::Transient {
            stream: stream.clone(),
            data: data.to_owned(),
            exclude_socket: Some(self.sid().to_owned()),
            kind: crate::broadcast::TransientKind::Message,
        });
        debug!(sid = %self.sid(), stream = %compact(stream.as_str()), "whispered");
    }

    fn command(
        &self,
        kind: CommandKind,
        identifier: &str,
        data: String,
        istate: StateMap,
    ) -> Command {
        // A stateful application's connection object knows its own
        // identifiers, request and state: the call carries none of them.
        let (connection_identifiers, env) = match self.stateful {
            true => self.stateful_env(),
            false => (self.identifiers.clone(), self.env(istate)),
        };
        Command {
            kind,
            identifier: identifier.to_owned(),
            connection_identifiers,
            data,
            env,
        }
    }

    async fn subscribe(&mut self, identifier: String) {
        let known = self.subscriptions.contains_key(identifier.as_str());
        if known && !self.stateful {
            self.node.metrics.client_message_failures.inc();
            client_log!(WARN, sid = %self.sid(), identifier = %compact(&identifier[..]), "already subscribed; duplicate subscribe ignored");
            return;
        }
        if !known && self.subscriptions.len() >= self.node.config.max_subscriptions {
            self.node.metrics.client_message_failures.inc();
            client_log!(WARN, sid = %self.sid(), limit = self.node.config.max_subscriptions, "max_subscriptions reached; rejected");
            self.transmit(protocol::reject_subscription(&identifier));
            return;
        }
        let limit = self.node.config.max_session_state_size;
        if self.state_size() + identifier.len() > limit {
            self.node.metrics.client_message_failures.inc();
            client_log!(WARN, sid = %self.sid(), size = identifier.len(), limit, "max_session_state_size reached; subscription rejected");
            self.transmit(protocol::reject_subscription(&identifier));
            return;
        }
        let command = self.command(
            CommandKind::Subscribe,
            &identifier,
            String::new(),
            StateMap::new(),
        );
        let identifier: Arc<str> = Arc::from(identifier);
        let mut reply = self.node.controller.command(self.sid(), command).await;
        self.answered(&reply);
        let app_presence = match &mut reply {
            Ok(reply) => {
                self.disconnect_interest |= reply.disconnect_interest;
                reply.presence.take()
            }
            Err(_) => None,
        };
        if self.stateful {
            self.subscribed(identifier.clone(), reply);
            return self.app_presence(&identifier, app_presence).await;
        }
        match reply {
            Ok(reply) if reply.status == Status::Success => {
                self.subscriptions
                    .insert(identifier.clone(), Subscription::default());
                let confirmed = reply.transmissions.iter().any(|t| {
                    protocol::transmission_type(t).as_deref() == Some("confirm_subscription")
                });
                self.apply(&identifier, reply);
                if !confirmed && !self.closing {
                    self.transmit(protocol::confirm_subscription(&identifier));
                }
                self.app_presence(&identifier, app_presence).await;
            }
            Ok(reply) => {
                if reply.status == Status::Error {
                    client_log!(WARN, sid = %self.sid(), identifier = %compact(&identifier[..]), error = %compact(reply.error_msg.as_str()), "subscribe failed in the application");
                } else {
                    debug!(sid = %self.sid(), identifier = %compact(&identifier[..]), "subscription rejected");
                }
                let rejected = reply.transmissions.iter().any(|t| {
                    protocol::transmission_type(t).as_deref() == Some("reject_subscription")
                });
                let mut transmissions = reply.transmissions;
                if !rejected {
                    transmissions.push(protocol::reject_subscription(&identifier));
                }
                self.deliver(transmissions, reply.broadcasts, reply.disconnect);
            }
            Err(e) => {
                client_log!(WARN, sid = %self.sid(), identifier = %compact(&identifier[..]), error = %compact(e.to_string()), "subscribe call failed; rejecting");
                self.transmit(protocol::reject_subscription(&identifier));
            }
        }
    }

    async fn unsubscribe(&mut self, identifier: String) {
        let istate = match self.subscriptions.remove_entry(identifier.as_str()) {
            Some((key, subscription)) => {
                // The client has dropped the subscription whatever the
                // application says, so its streams and state go now.
                for stream in &subscription.streams {
                    self.node.hub.unsubscribe(stream, &key, self.handle.id);
                }
                self.handle.forget_positions(&key);
                subscription.istate.to_state_map()
            }
            // Action Cable answers this itself (its error, rescue_from).
            None if self.stateful => StateMap::new(),
            None => {
                self.node.metrics.client_message_failures.inc();
                client_log!(WARN, sid = %self.sid(), identifier = %compact(&identifier[..]), "unsubscribe from a channel not subscribed; ignored");
                return;
            }
        };
        let presence_stream = istate.get(presence::PRESENCE_STREAM_STATE).cloned();
        let command = self.command(CommandKind::Unsubscribe, &identifier, String::new(), istate);
        let reply = self.node.controller.command(self.sid(), command).await;
        self.answered(&reply);
        // Unsubscribing leaves the presence set (anycable-go 1.6 node.go
        // `Unsubscribe`), whatever the application said.
        if let (Some(stream), Some(broker)) = (presence_stream, self.node.broker.clone()) {
            presence::leave(&self.node, &broker, self.sid(), &stream).await;
        }
        match reply {
            Ok(reply) => {
                if reply.status != Status::Success {
                    client_log!(WARN, sid = %self.sid(), identifier = %compact(&identifier[..]), error = %compact(reply.error_msg.as_str()), "unsubscribe failed in the application");
                }
                merge_state(&mut self.cstate, reply.state.cstate);
                self.deliver(reply.transmissions, reply.broadcasts, reply.disconnect);
            }
            Err(e) => {
                client_log!(WARN, sid = %self.sid(), identifier = %compact(&identifier[..]), error = %compact(e.to_string()), "unsubscribe call failed")
            }
        }
    }

    async fn perform(&mut self, identifier: String, data: String) {
        let (key, istate) = match self.subscriptions.get_key_value(identifier.as_str()) {
            Some((key, subscription)) => (key.clone(), subscription.istate.to_state_map()),
            // Action Cable answers this itself (its error, rescue_from).
            None if self.stateful => (Arc::from(identifier.as_str()), StateMap::new()),
            None => {
                self.node.metrics.client_message_failures.inc();
                client_log!(WARN, sid = %self.sid(), identifier = %compact(&identifier[..]), "message for a channel not subscribed; ignored");
                return;
            }
        };
        let command = self.command(CommandKind::Message, &identifier, data, istate);
        let reply = self.node.controller.command(self.sid(), command).await;
        self.answered(&reply);
        match reply {
            Ok(mut reply) => {
                if reply.status == Status::Error {
                    client_log!(WARN, sid = %self.sid(), identifier = %compact(&identifier[..]), error = %compact(reply.error_msg.as_str()), "perform failed in the application");
                }
                // A stateful application's channel state changes in
                // performs too: kept for restore.
                let state_changed = self.stateful && !reply.state.istate.is_empty();
                let app_presence = reply.presence.take();
                self.apply(&key, reply);
                self.app_presence(&key, app_presence).await;
                if state_changed {
                    self.store_soon();
                }
            }
            Err(e) => {
                client_log!(WARN, sid = %self.sid(), identifier = %compact(&identifier[..]), error = %compact(e.to_string()), "perform call failed")
            }
        }
    }

    /// A call answered without an error: a stateful application's
    /// connection object is rebuilt (or was never gone).
    fn answered(&mut self, reply: &Result<CommandReply, CallError>) {
        if matches!(reply, Ok(r) if r.status != Status::Error) {
            self.rebuild_from = None;
        }
    }

    /// A stateful application's answer to `subscribe`: it has the
    /// subscription (Success) or not (Failure, e.g. rejected); what the
    /// client receives is what it transmitted, nothing added.
    fn subscribed(&mut self, identifier: Arc<str>, reply: Result<CommandReply, CallError>) {
        match reply {
            Ok(reply) if reply.status == Status::Success => {
                self.subscriptions.get_or_default(identifier.clone());
                self.apply(&identifier, reply);
            }
            Ok(reply) => {
                if reply.status == Status::Error {
                    client_log!(WARN, sid = %self.sid(), identifier = %compact(&identifier[..]), error = %compact(reply.error_msg.as_str()), "subscribe failed in the application");
                }
                if let Some(sub) = self.subscriptions.remove(&identifier) {
                    for stream in &sub.streams {
                        self.node
                            .hub
                            .unsubscribe(stream, &identifier, self.handle.id);
                    }
                }
                self.deliver(reply.transmissions, reply.broadcasts, reply.disconnect);
            }
            Err(e) => {
                client_log!(WARN, sid = %self.sid(), identifier = %compact(&identifier[..]), error = %compact(e.to_string()), "subscribe call failed; rejecting");
                self.transmit(protocol::reject_subscription(&identifier));
            }
        }
    }

    /// Runs the application's callback for a message on a callback stream,
    /// if the subscription still streams it.
    async fn stream_message(&mut self, message: StreamMessage) {
        let Some((key, sub)) = self.subscriptions.get_key_value(&*message.identifier) else {
            return;
        };
        if !sub.streams.contains(&message.stream) {
            return;
        }
        let key = key.clone();
        match self
            .node
            .controller
            .stream_message(self.sid(), message)
            .await
        {
            Ok(mut reply) => {
                if reply.status == Status::Error {
                    client_log!(WARN, sid = %self.sid(), identifier = %compact(&key[..]), error = %compact(reply.error_msg.as_str()), "stream callback failed in the application");
                }
                let app_presence = reply.presence.take();
                self.apply(&key, reply);
                self.app_presence(&key, app_presence).await;
            }
            Err(e) => {
                client_log!(WARN, sid = %self.sid(), identifier = %compact(&key[..]), error = %compact(e.to_string()), "stream callback call failed")
            }
        }
    }

    /// Applies a command reply in the contract's order: disconnect flag,
    /// stop_streams (else stopped_streams), streams, istate, cstate, then the
    /// transmissions; the disconnect itself happens after them.
    fn apply(&mut self, identifier: &Arc<str>, reply: CommandReply) {
        let hub = &self.node.hub;
        let id = self.handle.id;
        if let Some(sub) = self.subscriptions.get_mut(identifier) {
            if reply.stop_streams {
                sub.callback_streams = VecSet::default();
                for stream in sub.streams.take() {
                    hub.unsubscribe(&stream, identifier, id);
                }
            } else {
                for stream in &reply.stopped_streams {
                    sub.callback_streams.remove(stream);
                    if sub.streams.remove(stream) {
                        hub.unsubscribe(stream, identifier, id);
                    }
                }
            }
            for stream in reply.streams {
                let via = if reply.callback_streams.contains(&stream) {
                    Via::Callback
                } else {
                    Via::Socket
                };
                // A callback stream is (re)registered: it may have been a
                // plain one before.
                if via == Via::Callback || !sub.streams.contains(&stream) {
                    if via == Via::Callback && self.app_messages.is_none() {
                        self.app_messages = self.handle.open_app_queue();
                    }
                    if via == Via::Callback {
                        sub.callback_streams.insert(stream.clone());
                    } else if self.hold_new_streams {
                        self.handle.hold(identifier, &stream);
                    }
                    hub.subscribe(&stream, identifier, &self.handle, via);
                    sub.streams.insert(stream);
                }
            }
            sub.istate.merge(reply.state.istate);
        }
        merge_state(&mut self.cstate, reply.state.cstate);
        self.deliver(reply.transmissions, reply.broadcasts, reply.disconnect);
        self.enforce_state_size();
    }

    /// Bytes of state this session holds (`max_session_state_size`): what
    /// it keeps in memory and sends in its Disconnect call.
    fn state_size(&self) -> usize {
        let map = |m: &StateMap| m.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
        let subscriptions: usize = self
            .subscriptions
            .iter()
            .map(|(id, s)| {
                id.len() + s.streams.iter().map(String::len).sum::<usize>() + s.istate.size()
            })
            .sum();
        self.identifiers.len() + map(&self.cstate) + subscriptions
    }

    /// Subscribes are refused before they pass the budget; state the
    /// application's replies add (streams, istate, cstate, perhaps from
    /// client data) can only be refused by closing the session.
    fn enforce_state_size(&mut self) {
        let (size, limit) = (self.state_size(), self.node.config.max_session_state_size);
        if size > limit && !self.closing {
            client_log!(WARN, sid = %self.sid(), size, limit, "session state over max_session_state_size; disconnecting");
            self.closing = true;
            self.handle.close(CloseRequest::disconnect(
                DisconnectReason::InvalidRequest,
                false,
            ));
        }
    }

    /// The end of every command reply: transmissions, then the broadcasts the
    /// application made meanwhile, then the disconnect it asked for.
    fn deliver(
        &mut self,
        transmissions: Vec<String>,
        broadcasts: Vec<(String, String)>,
        disconnect: bool,
    ) {
        for frame in transmissions {
            self.transmit(frame);
        }
        self.node.publish_deferred(broadcasts);
        if disconnect {
            self.close_by_application();
        }
    }

    fn close_by_application(&mut self) {
        debug!(sid = %self.sid(), "application asked to disconnect");
        self.closing = true;
        self.handle.close(CloseRequest::silent(1000));
    }

    /// Leaves the hub, queues the Disconnect call, then leaves the node. In
    /// that order, so shutdown (which waits for open sessions and queued
    /// calls) never sees a moment with neither.
    async fn finish(mut self, connected: bool) {
        self.leave_hub();
        // The records stay presence_ttl more (a client back by then causes
        // no leave/join), then the sweep drops them and sends the leaves.
        if self.presence_alive.take().is_some()
            && let Some(broker) = &self.node.broker
            && let Err(e) = broker.touch_presence(self.sid()).await
        {
            debug!(sid = %self.sid(), error = %e, "presence touch failed");
        }
        if connected {
            self.store().await;
        }
        if connected && self.owes_disconnect() {
            // Kept for restore: its Disconnect waits (see park_disconnect),
            // unless the application closed it (kick, reject): that is final.
            let park = self.stateful
                && !self.closing
                && !self.handle.is_final()
                && self.restorable()
                && self
                    .subscriptions
                    .values()
                    .all(|s| s.callback_streams.is_empty());
            let request = self.disconnect_request();
            if park {
                self.node
                    .park_disconnect(self.handle.sid.clone(), request, self.rebuild_from.clone())
                    .await;
            } else {
                self.node
                    .enqueue_disconnect(self.handle.sid.clone(), request)
                    .await;
            }
        }
        if let Some(open) = self.open.take() {
            self.node
                .close_session(&self.handle, &self.identifiers, open);
        }
        self.finished = true;
    }

    /// Whether a Disconnect call is made for this (connected) session
    /// (checked against anycable-go 1.6.16 node/node.go
    /// `markDisconnectable`, `Disconnect`): always for a stateful
    /// application (its connection object is closed by that call) and with
    /// `disconnect_mode = always`; with `auto`, only when the application
    /// took part (not for a JWT-identified session with only fast-lane
    /// subscriptions). `never` is the queue's.
    fn owes_disconnect(&self) -> bool {
        self.stateful
            || self.node.config.disconnect_mode == DisconnectMode::Always
            || self.disconnect_interest
    }

    fn leave_hub(&self) {
        for (identifier, sub) in &self.subscriptions {
            for stream in &sub.streams {
                self.node
                    .hub
                    .unsubscribe(stream, identifier, self.handle.id);
            }
        }
    }

    fn disconnect_request(&mut self) -> DisconnectRequest {
        self.disconnect_queued = true;
        let (identifiers, stateful_env) = match self.stateful {
            true => self.stateful_env(),
            false => (String::new(), Env::default()),
        };
        let mut istate = StateMap::new();
        let mut subscriptions = Vec::with_capacity(self.subscriptions.len());
        for (identifier, sub) in self.subscriptions.take() {
            if !sub.istate.is_empty() {
                let encoded =
                    serde_json::to_string(&sub.istate).expect("string maps always serialize");
                istate.insert(identifier.to_string(), encoded);
            }
            subscriptions.push(identifier.to_string());
        }
        DisconnectRequest {
            identifiers: match self.stateful {
                true => identifiers,
                false => self.identifiers.clone(),
            },
            subscriptions,
            env: match self.stateful {
                true => stateful_env,
                false => self.env(istate),
            },
        }
    }
}

/// A session that ends without [`Session::finish`] (its task panicked, or was
/// dropped) is cleaned up here like any other: closed (1011), out of the
/// hub, its Disconnect call queued, the node told. Without this a panic left
/// it counted for ever: `max_conn` refused new clients, shutdown waited.
impl Drop for Session {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        if std::thread::panicking() {
            self.node.metrics.session_panics.inc();
            tracing::error!(sid = %self.sid(), "session panicked; cleaned up and closed with 1011");
        }
        self.handle.close_urgently(CloseRequest::silent(1011));
        self.leave_hub();
        let request =
            (self.handle.is_welcomed() && !self.disconnect_queued && self.owes_disconnect())
                .then(|| self.disconnect_request());
        let (node, handle) = (self.node.clone(), self.handle.clone());
        let identifiers = std::mem::take(&mut self.identifiers);
        let Some(open) = self.open.take() else { return };
        match (request, tokio::runtime::Handle::try_current()) {
            (Some(request), Ok(runtime)) => {
                // close_session after the enqueue, as in finish: shutdown
                // waits for one or the other, never sees neither.
                runtime.spawn(async move {
                    node.enqueue_disconnect(handle.sid.clone(), request).await;
                    node.close_session(&handle, &identifiers, open);
                });
            }
            _ => node.close_session(&handle, &identifiers, open),
        }
    }
}

#[cfg(test)]
mod tests;

mod compact;
