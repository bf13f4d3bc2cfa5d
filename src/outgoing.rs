//! A session's outgoing side: the queue between everyone who sends to a
//! client and the socket, and how a session is closed.
//!
//! Others reach a session only through its [`SessionHandle`]: queue a frame
//! (never blocking; a client with its whole `ws_max_pending_size` pending
//! is too slow and is disconnected), hand a message on a callback stream to
//! the application (the session's reader runs it, in order with the
//! client's commands), or ask it to close: after what is queued
//! ([`SessionHandle::close`]), or at once ([`SessionHandle::close_urgently`]).
//! The hub, the node and the session's reader all hold the handle; the
//! writer task ([`write_loop`]) owns the receiving end and the socket's sink.

use crate::broker::Position;
use crate::client_log::client_log;
use crate::controller::StreamMessage;
use crate::metrics::Metrics;
use crate::protocol::{self, DisconnectReason};
use crate::websocket::{self, FrameWriter, Kind};
use crate::write_budget::WriteBudget;
use bytes::Bytes;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Poll, Waker};
use std::time::Duration;
use tokio::io::{AsyncWrite, WriteHalf};
use tokio::sync::{Notify, mpsc};
use tokio::time::error::Elapsed;
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tracing::debug;

/// How long a closing writer may spend on the goodbye frames before the
/// socket is dropped (a client that does not read would block forever).
pub(crate) const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// What a queued pong holds beyond its bytes on the wire, counted against
/// the write budget until the writer takes it: a client that pings and
/// never reads is held to its budget in memory, not only in wire bytes.
const PONG_SLOT: usize = std::mem::size_of::<Outgoing>();

/// An item in a session's outgoing queue.
#[derive(Debug)]
pub enum Outgoing {
    Frame(Utf8Bytes),
    /// The answer to a client's ping (its payload).
    Pong(Bytes),
    /// Send the queued frames, then this optional frame and a close frame.
    Close(CloseRequest),
}

#[derive(Debug, Clone)]
pub struct CloseRequest {
    pub code: u16,
    /// The disconnect reason sent to the client, if any.
    pub reason: Option<DisconnectReason>,
    pub frame: Option<Utf8Bytes>,
}

impl CloseRequest {
    pub fn disconnect(reason: DisconnectReason, reconnect: bool) -> Self {
        CloseRequest {
            code: reason.close_code(),
            reason: Some(reason),
            frame: Some(protocol::disconnect(reason, reconnect).into()),
        }
    }

    pub fn silent(code: u16) -> Self {
        CloseRequest {
            code,
            reason: None,
            frame: None,
        }
    }
}

/// The shared face of a session, held by the hub and the node.
pub struct SessionHandle {
    /// Process-local key (cheaper than the sid for maps).
    pub id: u64,
    /// The session id sent in `welcome` and in RPC metadata.
    pub sid: Arc<str>,
    queue: Queue,
    /// Bytes pending for this client (queued or unsent): `ws_max_pending_size`.
    budget: Arc<WriteBudget>,
    /// An urgent close that jumps the queue (too_slow, shutdown); boxed,
    /// as the cursors below: most sessions never have one, and every
    /// session's handle is kept as long as it lives.
    urgent_close: OnceLock<Box<CloseRequest>>,
    urgent: Notify,
    /// Set once the application accepted the connection: pings start then,
    /// so the welcome is always the first message.
    welcomed: AtomicBool,
    /// The session's reader sends its pings itself (its own interval or
    /// precision, or a pong timeout), not the node's shared ping.
    own_pings: AtomicBool,
    /// Messages on callback streams for the reader to hand to the
    /// application; made when the first callback stream is subscribed.
    app_queue: OnceLock<mpsc::UnboundedSender<StreamMessage>>,
    /// Bytes of messages waiting in `app_queue`: bounded like the socket's
    /// own queue (`ws_max_pending_size`), so a client whose callbacks the
    /// application cannot keep up with is disconnected as too slow rather
    /// than allowed to grow memory.
    app_bytes: AtomicU64,
    /// Extended-protocol sessions only: per stream, the last position sent
    /// and the messages held while its history is replayed.
    positions: OnceLock<Box<Mutex<Cursors>>>,
    /// A close has been queued: the writer writes nothing queued after it,
    /// so a positioned message then is neither sent nor counted as sent.
    closing: AtomicBool,
    /// When the first close was asked for (Unix seconds, 0 before): from
    /// then on nothing positioned reaches the client.
    closed_at: AtomicU64,
    /// Closed for good by the application or a remote disconnect (a kick):
    /// not kept for restore.
    final_close: AtomicBool,
    metrics: Arc<Metrics>,
}

/// The outgoing queue: frames in order, and the writer's waker while it
/// waits. Compact on purpose (an idle session's is a few dozen bytes and
/// no allocation): a tokio mpsc channel allocated a block of 32 slots, about
/// 2 KiB, for every connection, used or not. The deque's buffer is given
/// back once it is drained ([`Receiver::recv_batch`]).
struct Queue {
    state: Mutex<QueueState>,
    /// The writer is gone: nothing is queued any more (set under the lock).
    closed: AtomicBool,
}

struct QueueState {
    items: VecDeque<Outgoing>,
    /// The writer, when it waits for an item.
    waker: Option<Waker>,
}

/// Slots kept by an emptied queue: none. Swapping buffers with the writer
/// kept two small ones per session (about 320 bytes) for ever; one
/// allocation per batch costs nothing next to the write it feeds.
const KEPT_SLOTS: usize = 0;

impl Queue {
    fn new() -> Queue {
        Queue {
            state: Mutex::new(QueueState {
                items: VecDeque::new(),
                waker: None,
            }),
            closed: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `item`; false when the writer is gone.
    fn push(&self, item: Outgoing) -> bool {
        let waker = {
            let mut state = self.lock();
            if self.closed.load(Ordering::Relaxed) {
                return false;
            }
            state.items.push_back(item);
            state.waker.take()
        };
        // Woken outside the lock: the writer takes it at once.
        if let Some(waker) = waker {
            waker.wake();
        }
        true
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }
}

/// The writer's end of a session's outgoing queue.
pub struct Receiver {
    handle: Arc<SessionHandle>,
}

impl Receiver {
    /// The next item, waiting for one. (Never `None` while the handle
    /// lives; kept an `Option` as the channel it replaces had it.)
    pub async fn recv(&mut self) -> Option<Outgoing> {
        std::future::poll_fn(|cx| {
            let mut state = self.handle.queue.lock();
            match state.items.pop_front() {
                Some(item) => {
                    if state.items.is_empty() && state.items.capacity() > KEPT_SLOTS {
                        state.items = VecDeque::new();
                    }
                    Poll::Ready(Some(item))
                }
                None => {
                    match &mut state.waker {
                        Some(w) if w.will_wake(cx.waker()) => {}
                        slot => *slot = Some(cx.waker().clone()),
                    }
                    Poll::Pending
                }
            }
        })
        .await
    }

    /// Waits for at least one item, then moves every queued item into
    /// `batch` (which must be empty) in one go: the writer writes them all
    /// before it looks again. A large emptied batch is freed first.
    pub async fn recv_batch(&mut self, batch: &mut VecDeque<Outgoing>) {
        debug_assert!(batch.is_empty());
        if batch.capacity() > KEPT_SLOTS {
            *batch = VecDeque::new();
        }
        std::future::poll_fn(|cx| {
            let mut state = self.handle.queue.lock();
            if state.items.is_empty() {
                match &mut state.waker {
                    Some(w) if w.will_wake(cx.waker()) => {}
                    slot => *slot = Some(cx.waker().clone()),
                }
                return Poll::Pending;
            }
            std::mem::swap(&mut state.items, batch);
            Poll::Ready(())
        })
        .await
    }

    /// The next item if one is queued.
    pub fn try_recv(&mut self) -> Option<Outgoing> {
        self.handle.queue.lock().items.pop_front()
    }

    pub fn is_empty(&self) -> bool {
        self.handle.queue.lock().items.is_empty()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let items = {
            let mut state = self.handle.queue.lock();
            self.handle.queue.closed.store(true, Ordering::Relaxed);
            state.waker = None;
            std::mem::take(&mut state.items)
        };
        drop(items);
    }
}

/// Stream → subscription identifier → where that subscription is in it.
type Cursors = HashMap<String, HashMap<Arc<str>, Cursor>>;

/// The cursor of (`identifier`, `stream`); allocates only the first time.
fn cursor<'a>(cursors: &'a mut Cursors, identifier: &Arc<str>, stream: &str) -> &'a mut Cursor {
    if !cursors.contains_key(stream) {
        cursors.insert(stream.to_owned(), HashMap::new());
    }
    let by_id = cursors.get_mut(stream).expect("inserted above");
    by_id.entry(identifier.clone()).or_default()
}

/// Where a subscription is in one stream (extended protocol): this session
/// has sent it the offsets `floor + 1 ..= offset` of `epoch`, in order.
#[derive(Default)]
struct Cursor {
    epoch: String,
    offset: u64,
    /// The offset before the first one this session sent in `epoch`.
    floor: u64,
    /// Live messages that arrived while history was being read: sent after
    /// it, those it already had dropped.
    held: Option<Vec<(Position, Utf8Bytes)>>,
    /// Offsets after `floor` and before `offset` that have not come yet: a
    /// later one came first (two nodes position broadcasts of one stream
    /// and pass them on over the bus, where they can cross). Sent when they
    /// come; the last [`MAX_GAPS`] are remembered. Empty (no allocation)
    /// while messages come in order.
    gaps: Vec<u64>,
}

/// Offsets skipped ahead of their turn that a cursor remembers.
const MAX_GAPS: u64 = 32;

impl Cursor {
    /// Whether a message at `position` is to be sent: not when this session
    /// already sent it (`floor < offset <= self.offset`). One after the
    /// last sent becomes the last sent; one at or before `floor` was never
    /// sent by this session (the client asked for history from before its
    /// first live message, e.g. after a restore): it is sent, the cursor
    /// stays where it is. A high-water mark alone dropped those: history
    /// asked for after a live message had gone out was lost.
    ///
    /// An offset skipped by a later one (`offset + 1 < position.offset`) is
    /// remembered as a gap and sent once when it comes.
    fn advance(&mut self, position: &Position) -> bool {
        if self.epoch == position.epoch && position.offset <= self.offset {
            if position.offset <= self.floor {
                return true;
            }
            return match self.gaps.iter().position(|&g| g == position.offset) {
                Some(i) => {
                    self.gaps.swap_remove(i);
                    true
                }
                None => false,
            };
        }
        if self.epoch != position.epoch {
            self.epoch.clone_from(&position.epoch);
            self.floor = position.offset.saturating_sub(1);
            self.gaps = Vec::new();
        } else if position.offset > self.offset + 1 {
            let from = (self.offset + 1).max(position.offset.saturating_sub(MAX_GAPS));
            self.gaps.extend(from..position.offset);
            if self.gaps.len() as u64 > MAX_GAPS {
                self.gaps.sort_unstable();
                let excess = self.gaps.len() - MAX_GAPS as usize;
                self.gaps.drain(..excess);
            }
        }
        self.offset = position.offset;
        true
    }
}

impl std::fmt::Debug for SessionHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionHandle")
            .field("id", &self.id)
            .field("sid", &self.sid)
            .finish()
    }
}

impl SessionHandle {
    pub fn new(
        id: u64,
        sid: Arc<str>,
        budget: Arc<WriteBudget>,
        metrics: Arc<Metrics>,
    ) -> (Arc<Self>, Receiver) {
        let handle = SessionHandle {
            id,
            sid,
            queue: Queue::new(),
            budget,
            urgent_close: OnceLock::new(),
            urgent: Notify::new(),
            welcomed: AtomicBool::new(false),
            own_pings: AtomicBool::new(false),
            app_queue: OnceLock::new(),
            app_bytes: AtomicU64::new(0),
            positions: OnceLock::new(),
            closing: AtomicBool::new(false),
            closed_at: AtomicU64::new(0),
            final_close: AtomicBool::new(false),
            metrics,
        };
        let handle = Arc::new(handle);
        let rx = Receiver {
            handle: handle.clone(),
        };
        (handle, rx)
    }

    /// Queues a text frame without waiting. Returns false when it was not
    /// queued: the session is gone, or the client already has its whole
    /// `ws_max_pending_size` pending, in which case it is disconnected as too slow.
    pub fn send(&self, frame: Utf8Bytes) -> bool {
        let len = frame.len();
        if self.is_closed() {
            return false;
        }
        if !self.budget.admit_frame(len) {
            self.too_slow("outgoing bytes over ws_max_pending_size");
            return false;
        }
        if !self.queue.push(Outgoing::Frame(frame)) {
            return false;
        }
        self.metrics.bytes_out.inc_by(len as u64);
        true
    }

    /// Makes this an extended-protocol session: messages carry their stream
    /// position and none is sent twice ([`SessionHandle::send_positioned`]).
    pub fn track_positions(&self) {
        let _ = self.positions.set(Box::new(Mutex::new(HashMap::new())));
    }

    pub fn tracks_positions(&self) -> bool {
        self.positions.get().is_some()
    }

    fn cursors(&self) -> Option<std::sync::MutexGuard<'_, Cursors>> {
        self.positions
            .get()
            .map(|m| m.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Queues a message at `position` of `stream` for the subscription
    /// `identifier`: held while that history is being replayed, dropped
    /// when the client already has it.
    pub fn send_positioned(
        &self,
        identifier: &Arc<str>,
        stream: &str,
        position: &Position,
        frame: Utf8Bytes,
    ) -> bool {
        let Some(mut cursors) = self.cursors() else {
            return self.send(frame);
        };
        // Its place is what a restore replays from (`Session::catch_up`):
        // it must not move for a message that will never be written.
        if self.closing.load(Ordering::Acquire) || self.is_closed() {
            return false;
        }
        let cursor = cursor(&mut cursors, identifier, stream);
        if let Some(held) = &mut cursor.held {
            held.push((position.clone(), frame));
            return true;
        }
        // Sent under the lock: two senders of one stream keep their order.
        cursor.advance(position) && self.send(frame)
    }

    /// Holds live messages of `stream` for `identifier` until
    /// [`SessionHandle::replay`]: the history read meanwhile goes first.
    pub fn hold(&self, identifier: &Arc<str>, stream: &str) {
        if let Some(mut cursors) = self.cursors() {
            cursor(&mut cursors, identifier, stream)
                .held
                .get_or_insert_with(Vec::new);
        }
    }

    /// Sends `history` (in order) then the held live messages of `stream`
    /// for `identifier`, each only if the client does not have it yet, and
    /// stops holding. Returns how many history messages were sent.
    pub fn replay(
        &self,
        identifier: &Arc<str>,
        stream: &str,
        history: Vec<(Position, Utf8Bytes)>,
    ) -> usize {
        let Some(mut cursors) = self.cursors() else {
            return 0;
        };
        if self.closing.load(Ordering::Acquire) || self.is_closed() {
            return 0;
        }
        let cursor = cursor(&mut cursors, identifier, stream);
        let held = cursor.held.take().unwrap_or_default();
        let mut sent = 0;
        for (position, frame) in history {
            if cursor.advance(&position) && self.send(frame) {
                sent += 1;
            }
        }
        for (position, frame) in held {
            if cursor.advance(&position) {
                self.send(frame);
            }
        }
        sent
    }

    /// Where each subscription is in each of its streams: the last
    /// position sent (kept with a closing session, see
    /// `session::StoredSession`).
    pub fn positions(&self) -> Vec<(Arc<str>, String, Position)> {
        let Some(cursors) = self.cursors() else {
            return Vec::new();
        };
        let mut all = Vec::new();
        for (stream, by_id) in cursors.iter() {
            for (identifier, cursor) in by_id {
                if !cursor.epoch.is_empty() {
                    let position = Position {
                        epoch: cursor.epoch.clone(),
                        offset: cursor.offset,
                    };
                    all.push((identifier.clone(), stream.clone(), position));
                }
            }
        }
        all
    }

    /// Forgets where the subscription `identifier` was (it is gone).
    pub fn forget_positions(&self, identifier: &str) {
        if let Some(mut cursors) = self.cursors() {
            cursors.retain(|_, by_id| {
                by_id.remove(identifier);
                !by_id.is_empty()
            });
        }
    }

    /// Queues a message on a callback stream for the application, without
    /// waiting. A full queue disconnects the client as too slow.
    pub fn send_to_app(&self, message: StreamMessage) -> bool {
        let Some(queue) = self.app_queue.get() else {
            return false;
        };
        let len = message.data.len() as u64;
        let limit = self.budget.limit();
        let queued = self.app_bytes.fetch_add(len, Ordering::AcqRel);
        if limit > 0 && queued > 0 && queued + len > limit {
            self.app_bytes.fetch_sub(len, Ordering::AcqRel);
            self.too_slow("messages for stream callbacks over ws_max_pending_size");
            return false;
        }
        if queue.send(message).is_err() {
            self.app_bytes.fetch_sub(len, Ordering::AcqRel);
            return false;
        }
        true
    }

    /// Closes after the frames already queued (a remote disconnect, the
    /// application's `disconnect`).
    pub fn close(&self, request: CloseRequest) {
        // Set under the cursors' lock: a positioned message is either
        // queued before the close or not counted.
        let _cursors = self.cursors();
        self.closing.store(true, Ordering::Release);
        self.mark_closed_at();
        self.queue.push(Outgoing::Close(request));
    }

    fn mark_closed_at(&self) {
        let _ = self.closed_at.compare_exchange(
            0,
            crate::broker::now(),
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }

    /// Marks the coming close as final (see [`SessionHandle::is_final`]).
    pub(crate) fn mark_final(&self) {
        self.final_close.store(true, Ordering::Release);
    }

    /// Whether the session was closed for good (the application's
    /// `disconnect`, a remote disconnect): its state is not kept for
    /// restore and its Disconnect is made at once.
    pub(crate) fn is_final(&self) -> bool {
        self.final_close.load(Ordering::Acquire)
    }

    /// When the first close was asked for (Unix seconds), if it was.
    pub(crate) fn closed_at(&self) -> Option<u64> {
        Some(self.closed_at.load(Ordering::Acquire)).filter(|&at| at > 0)
    }

    fn is_closed(&self) -> bool {
        self.queue.is_closed() || self.urgent_close.get().is_some()
    }

    /// Disconnects the client as too slow (once), dropping what is queued.
    pub(crate) fn too_slow(&self, why: &'static str) {
        if self.close_urgently(CloseRequest::disconnect(DisconnectReason::TooSlow, true)) {
            self.metrics.slow_client_disconnects.inc();
            client_log!(INFO, sid = %self.sid, why, pending = self.budget.pending(), "client too slow, disconnecting");
        }
    }

    /// Closes after the queued frames, and at once if that has not happened
    /// within [`CLOSE_GRACE`] (a client that does not read never drains its
    /// queue). The timer runs on `runtime`, so any thread may call this
    /// (the gem calls it from Ruby threads).
    pub fn close_soon(self: &Arc<Self>, runtime: &tokio::runtime::Handle, request: CloseRequest) {
        self.close(request.clone());
        let handle = Arc::downgrade(self);
        runtime.spawn(async move {
            tokio::time::sleep(CLOSE_GRACE).await;
            if let Some(handle) = handle.upgrade() {
                handle.close_urgently(request);
            }
        });
    }

    /// Closes now, dropping queued frames. The first urgent close wins.
    pub fn close_urgently(&self, request: CloseRequest) -> bool {
        let first = self.urgent_close.set(Box::new(request)).is_ok();
        self.mark_closed_at();
        if first {
            self.urgent.notify_one();
        }
        first
    }

    pub fn is_welcomed(&self) -> bool {
        self.welcomed.load(Ordering::Acquire)
    }

    /// Whether the session sends its own pings (see `own_pings`).
    pub fn pings_itself(&self) -> bool {
        self.own_pings.load(Ordering::Acquire)
    }

    pub(crate) fn ping_by_itself(&self) {
        self.own_pings.store(true, Ordering::Release);
    }

    /// The application accepted the connection: pings may start.
    pub(crate) fn mark_welcomed(&self) {
        self.welcomed.store(true, Ordering::Release);
    }

    /// Queues the pong to a client's ping, counted against the write
    /// budget; false when the client was over it already (it pings faster
    /// than it reads: too slow).
    pub(crate) fn send_pong(&self, payload: Bytes) -> bool {
        let admitted = self.budget.admit_control(payload.len(), PONG_SLOT);
        if !self.queue.push(Outgoing::Pong(payload)) {
            self.budget.release(PONG_SLOT);
        }
        admitted
    }

    /// Makes the queue of messages on callback streams; its receiving end
    /// goes to the reader. None when it exists already.
    pub(crate) fn open_app_queue(&self) -> Option<mpsc::UnboundedReceiver<StreamMessage>> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.app_queue.set(tx).is_ok().then_some(rx)
    }

    /// The reader took `message` off the application queue: its bytes no
    /// longer count against the budget.
    pub(crate) fn app_message_taken(&self, message: &StreamMessage) {
        self.app_bytes
            .fetch_sub(message.data.len() as u64, Ordering::AcqRel);
    }

    /// The urgent close asked for, if any.
    pub fn close_request(&self) -> Option<CloseRequest> {
        self.urgent_close.get().map(|request| (**request).clone())
    }
}

/// Drains the outgoing queue into the socket, batching writes: everything
/// queued is taken at once and encoded into writes of at least
/// `write_buffer_size` bytes (the last one smaller). A write that does not
/// finish within `write_timeout` (`ws_write_timeout`) means the client is
/// not reading: it is disconnected as too slow, even before its queue fills
/// (checked against anycable-go 1.6 node/session.go: each frame's write has
/// a deadline of `ws_write_timeout`, 2 s by default, and a write past it
/// disconnects the client).
pub(crate) async fn write_loop<S>(
    mut sink: FrameWriter<WriteHalf<S>>,
    mut queue: Receiver,
    handle: Arc<SessionHandle>,
    write_timeout: Duration,
) where
    S: AsyncWrite + Send + 'static,
{
    let mut batch: VecDeque<Outgoing> = VecDeque::new();
    let close = loop {
        if handle.urgent_close.get().is_some() {
            break handle.close_request();
        }
        tokio::select! {
            biased;
            _ = handle.urgent.notified() => break handle.close_request(),
            _ = queue.recv_batch(&mut batch) => {}
        }
        // A write to a client that does not read can block for ever: race it
        // against an urgent close. Boxed: it lives only while writing, and
        // inline (with its timers and its buffer) it made the future an
        // idle connection holds for its whole life twice as large.
        let result: Result<std::io::Result<Option<CloseRequest>>, Elapsed> = tokio::select! {
            biased;
            _ = handle.urgent.notified() => break handle.close_request(),
            r = Box::pin(write_batch(&mut sink, &mut batch, &handle.budget, write_timeout)) => r,
        };
        match result {
            Ok(Ok(None)) => continue,
            Ok(Ok(Some(request))) => break Some(request),
            Ok(Err(e)) => {
                debug!(sid = %handle.sid, error = %e, "write failed");
                return;
            }
            Err(_) => {
                if handle.close_urgently(CloseRequest::disconnect(DisconnectReason::TooSlow, true))
                {
                    handle.metrics.slow_client_disconnects.inc();
                    handle.metrics.write_timeouts.inc();
                    client_log!(INFO, sid = %handle.sid, "client too slow: a write did not finish within ws_write_timeout, disconnecting");
                }
                // The socket cannot take the goodbye either: drop it.
                return;
            }
        }
    };
    let Some(close) = close else { return };
    debug!(sid = %handle.sid, code = close.code, "closing");
    let goodbye = Box::pin(tokio::time::timeout(
        CLOSE_GRACE,
        say_goodbye(&mut sink, &handle, close),
    ));
    match goodbye.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => debug!(sid = %handle.sid, error = %e, "close failed"),
        Err(_) => debug!(sid = %handle.sid, "close timed out; dropping the socket"),
    }
}

/// The close's last frame (if any) and the close frame (see [`write_loop`]).
///
/// A batch write an urgent close cut short left the rest of its buffer in
/// `sink`: it goes first, so the client never reads the goodbye inside a
/// frame cut in two.
async fn say_goodbye<S>(
    sink: &mut FrameWriter<WriteHalf<S>>,
    handle: &SessionHandle,
    close: CloseRequest,
) -> std::io::Result<()>
where
    S: AsyncWrite,
{
    if let Some(frame) = close.frame {
        handle.budget.account(frame.len());
        sink.push(Kind::Text, frame.as_bytes());
    }
    handle.budget.account(2);
    sink.push(Kind::Close, &websocket::close_payload(close.code));
    sink.write_buffered().await?;
    sink.flush().await
}

/// Writes a batch (see [`write_loop`]): the close request it met, if any.
/// Frames are encoded into the writer's buffer, written whenever it holds
/// `write_buffer_size` bytes and at the end; each write has
/// `write_timeout` (a write that completes at once never arms its timer).
async fn write_batch<S>(
    sink: &mut FrameWriter<WriteHalf<S>>,
    batch: &mut VecDeque<Outgoing>,
    budget: &WriteBudget,
    write_timeout: Duration,
) -> Result<std::io::Result<Option<CloseRequest>>, Elapsed>
where
    S: AsyncWrite,
{
    let mut met = None;
    while let Some(item) = batch.pop_front() {
        match item {
            Outgoing::Frame(frame) => sink.push(Kind::Text, frame.as_bytes()),
            Outgoing::Pong(payload) => {
                budget.release(PONG_SLOT);
                sink.push(Kind::Pong, &payload);
            }
            Outgoing::Close(request) => {
                met = Some(request);
                break;
            }
        }
        if sink.buffered() >= sink.chunk()
            && let Err(e) = tokio::time::timeout(write_timeout, sink.write_buffered()).await?
        {
            return Ok(Err(e));
        }
    }
    if let Err(e) = tokio::time::timeout(write_timeout, sink.write_buffered()).await? {
        return Ok(Err(e));
    }
    Ok(tokio::time::timeout(write_timeout, sink.flush())
        .await?
        .map(|()| met))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(offset: u64) -> Position {
        Position {
            epoch: "e".into(),
            offset,
        }
    }

    /// Broadcasts positioned by two nodes can cross on the bus: 6 before 5.
    /// 5 is still sent, once; an offset sent already is not sent again.
    #[test]
    fn a_cursor_sends_an_offset_that_came_after_a_later_one_once() {
        let mut c = Cursor::default();
        let sent: Vec<bool> = [4, 6, 5, 5, 6, 7, 10, 9, 8, 9, 3]
            .iter()
            .map(|&o| c.advance(&at(o)))
            .collect();
        assert_eq!(
            sent,
            [
                true, true, true, false, false, true, true, true, true, false, true
            ],
            "3 is before the first offset sent (history asked for): sent"
        );
        assert!(c.gaps.is_empty());
        // A jump far ahead remembers the last MAX_GAPS offsets only.
        assert!(c.advance(&at(200)));
        assert_eq!(c.gaps.len() as u64, MAX_GAPS);
        assert!(!c.advance(&at(100)));
        assert!(c.advance(&at(199)));
        assert!(!c.advance(&at(199)));
        // A new epoch starts afresh.
        let other = Position {
            epoch: "f".into(),
            offset: 1,
        };
        assert!(c.advance(&other));
        assert!(c.gaps.is_empty());
    }

    fn frames(rx: &mut Receiver) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(Outgoing::Frame(f)) = rx.try_recv() {
            out.push(f.as_str().to_owned());
        }
        out
    }

    #[tokio::test]
    async fn the_queue_keeps_order_frees_its_buffer_and_refuses_once_the_writer_is_gone() {
        let metrics = Arc::new(Metrics::new());
        let (handle, mut rx) =
            SessionHandle::new(1, "s".into(), WriteBudget::new(1 << 20), metrics);
        assert_eq!(
            handle.queue.lock().items.capacity(),
            0,
            "nothing allocated idle"
        );
        for n in 0..100 {
            assert!(handle.send(n.to_string().into()));
        }
        let mut batch = VecDeque::new();
        rx.recv_batch(&mut batch).await;
        let got: Vec<String> = batch
            .drain(..)
            .map(|item| match item {
                Outgoing::Frame(f) => f.as_str().to_owned(),
                other => panic!("expected a frame, got {other:?}"),
            })
            .collect();
        assert_eq!(got, (0..100).map(|n| n.to_string()).collect::<Vec<_>>());
        assert_eq!(
            handle.queue.lock().items.capacity(),
            0,
            "the burst's buffer left with the batch"
        );
        assert!(handle.send("next".into()));
        rx.recv_batch(&mut batch).await;
        assert_eq!(
            batch.len(),
            1,
            "the drained batch's buffer was freed, the new one holds one"
        );
        assert!(batch.capacity() < 100, "the burst's buffer is not kept");
        drop(rx);
        assert!(!handle.send("after".into()), "the writer is gone");
    }

    /// A queued pong counts its slot in memory against the budget, not
    /// only its 2 bytes on the wire, until the writer takes it.
    #[tokio::test]
    async fn a_queued_pong_counts_what_it_holds_until_written() {
        let metrics = Arc::new(Metrics::new());
        let budget = WriteBudget::new(1 << 20);
        let (handle, mut rx) = SessionHandle::new(1, "s".into(), budget.clone(), metrics);
        assert!(handle.send_pong(Bytes::new()));
        assert_eq!(budget.pending(), 2 + PONG_SLOT as u64);
        let (_client, server) = tokio::io::duplex(1 << 16);
        let (_reader, mut sink) = crate::websocket::split(server, 1 << 16, 1024, 1024);
        let mut batch = VecDeque::new();
        rx.recv_batch(&mut batch).await;
        let wrote = write_batch(&mut sink, &mut batch, &budget, Duration::from_secs(60)).await;
        assert!(matches!(wrote, Ok(Ok(None))));
        assert_eq!(
            budget.pending(),
            2,
            "the slot given back; the duplex is not metered"
        );
        // Pings from a client that never reads: refused once the slots
        // fill the budget (1 MiB), long before 1 MiB of 2-byte pongs.
        let refused_at = (0..1_000_000)
            .position(|_| !handle.send_pong(Bytes::new()))
            .expect("refused");
        assert!(refused_at < (1 << 20) / PONG_SLOT + 1, "{refused_at}");
    }

    #[test]
    fn live_messages_wait_for_the_history_and_none_comes_twice() {
        let metrics = Arc::new(Metrics::new());
        let (handle, mut rx) =
            SessionHandle::new(1, "s".into(), WriteBudget::new(1 << 20), metrics);
        handle.track_positions();
        let id: Arc<str> = Arc::from("room");
        handle.hold(&id, "chat");
        // Live messages 5 and 6 arrive while history 3..5 is being read.
        assert!(handle.send_positioned(&id, "chat", &at(5), "live5".into()));
        assert!(handle.send_positioned(&id, "chat", &at(6), "live6".into()));
        assert!(frames(&mut rx).is_empty(), "held until the history is sent");
        let history = (3..=5).map(|n| (at(n), format!("h{n}").into())).collect();
        assert_eq!(handle.replay(&id, "chat", history), 3);
        assert_eq!(frames(&mut rx), ["h3", "h4", "h5", "live6"]);
        // Already sent: dropped; the next one goes.
        assert!(!handle.send_positioned(&id, "chat", &at(6), "again".into()));
        assert!(handle.send_positioned(&id, "chat", &at(7), "live7".into()));
        // Another subscription on the same stream has its own place.
        let other: Arc<str> = Arc::from("other");
        assert!(handle.send_positioned(&other, "chat", &at(7), "other7".into()));
        assert_eq!(frames(&mut rx), ["live7", "other7"]);
        // A new epoch (the history was lost) starts over.
        let new = Position {
            epoch: "f".into(),
            offset: 1,
        };
        assert!(handle.send_positioned(&id, "chat", &new, "f1".into()));
        assert_eq!(frames(&mut rx), ["f1"]);
    }

    /// A restored client asks for history after live messages went out
    /// (they were broadcast between its welcome and its `history`): what it
    /// missed before them is still sent, what they were is not sent twice.
    #[test]
    fn history_asked_after_live_messages_fills_the_gap_before_them() {
        let metrics = Arc::new(Metrics::new());
        let (handle, mut rx) =
            SessionHandle::new(1, "s".into(), WriteBudget::new(1 << 20), metrics);
        handle.track_positions();
        let id: Arc<str> = Arc::from("room");
        assert!(handle.send_positioned(&id, "chat", &at(105), "live105".into()));
        assert!(handle.send_positioned(&id, "chat", &at(106), "live106".into()));
        let history = (101..=106)
            .map(|n| (at(n), format!("h{n}").into()))
            .collect();
        assert_eq!(handle.replay(&id, "chat", history), 4);
        assert_eq!(
            frames(&mut rx),
            ["live105", "live106", "h101", "h102", "h103", "h104"]
        );
        // The last one sent is still 106.
        assert!(!handle.send_positioned(&id, "chat", &at(106), "again".into()));
        assert!(handle.send_positioned(&id, "chat", &at(107), "live107".into()));
        assert_eq!(frames(&mut rx), ["live107"]);
        let positions = handle.positions();
        assert_eq!(positions, [(id.clone(), "chat".to_owned(), at(107))]);

        // Closing: what comes now is never written, and not counted as sent
        // (a restore replays from the last position that was).
        handle.close(CloseRequest::silent(1000));
        assert!(!handle.send_positioned(&id, "chat", &at(108), "live108".into()));
        assert_eq!(
            handle.replay(&id, "chat", vec![(at(109), "h109".into())]),
            0
        );
        assert_eq!(
            handle.positions(),
            [(id.clone(), "chat".to_owned(), at(107))]
        );
    }
}
