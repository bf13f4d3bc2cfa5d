//! The call queue: application calls handed to worker threads of the host
//! process (the gem's Ruby worker threads) and their replies handed back.
//!
//! Two callers submit calls: embedded sessions (through
//! [`crate::embedded::Embedded`], stateful) and the gem's gRPC server
//! ([`crate::rpc::server`], stateless, as AnyCable's RPC expects). Each call
//! is queued as owned Rust data ([`Request`]); a worker thread takes it with
//! [`CallQueue::next_call`] (a blocking wait that never touches the async
//! runtime, so a thread that may not enter tokio can call it), runs the
//! application code, and answers with [`CallQueue::reply`] (a [`Reply`] of
//! the kind [`CallQueue::kind_of`] says).
//!
//! Without a timeout (embedded), a slow `connect`, action or `unsubscribed`
//! completes and its reply is applied, as Action Cable puts no limit on
//! channel code; the RPC server keeps the RPC client's deadline
//! (`rpc_command_timeout`, `rpc_request_timeout`). A call still running after `slow_after` is
//! logged and counted (`ferrocable_slow_calls`), never dropped. The worker
//! threads answer every call they take, even when killed (see the gem's
//! worker pool).

use crate::controller::{CallError, CallKind, DisconnectRequest, Env, Reply, Request};
use crate::metrics::Metrics;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tracing::{info, warn};

/// One queued call, owned by the worker that took it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub id: u64,
    pub sid: String,
    /// True for gRPC calls: no live objects between calls; state travels in
    /// `cstate` / `istate`. False for embedded sessions, whose connection
    /// and channel objects live as long as the socket.
    pub stateless: bool,
    pub request: Request,
}

struct Queue {
    calls: VecDeque<Call>,
    /// Queued calls the capacity does not apply to (see [`exempt`]).
    exempt: usize,
    closed: bool,
    /// Bumped by [`CallQueue::interrupt`]: waiting workers return early.
    interrupts: u64,
}

/// Calls never refused for a full queue: Disconnects (the application's
/// callbacks run late rather than never) and stream messages (a session has
/// at most one in flight, and its backlog of them is bounded in bytes).
fn exempt(call: &Call) -> bool {
    matches!(call.request, Request::Disconnect(_) | Request::Stream(_))
}

impl Queue {
    fn push(&mut self, call: Call) {
        self.exempt += usize::from(exempt(&call));
        self.calls.push_back(call);
    }

    fn take(&mut self, n: usize) -> Vec<Call> {
        let taken: Vec<Call> = self.calls.drain(..n.min(self.calls.len())).collect();
        self.exempt -= taken.iter().filter(|c| exempt(c)).count();
        taken
    }

    fn remove(&mut self, at: usize) {
        if let Some(call) = self.calls.remove(at) {
            self.exempt -= usize::from(exempt(&call));
        }
    }

    /// Queued calls the capacity applies to.
    fn refusable(&self) -> usize {
        self.calls.len() - self.exempt
    }
}

/// Someone waiting for the reply to a call.
struct Waiter {
    reply: oneshot::Sender<Reply>,
    /// What the call was, so a reply is read as its kind: the worker does
    /// not have to say.
    kind: CallKind,
    sid: String,
    /// An embedded (stateful) connect: if it succeeds after its caller gave
    /// up, the application holds a connection nobody will disconnect.
    stateful_connect: bool,
}

/// Most abandoned stateful connects remembered (each is a few bytes; the
/// cap only matters if workers die holding calls).
const MAX_ABANDONED: usize = 4096;

pub struct CallQueue {
    queue: Mutex<Queue>,
    ready: Condvar,
    waiting: Mutex<HashMap<u64, Waiter>>,
    /// Stateful connects a worker took but nobody waits for any more: their
    /// session id, for the Disconnect a late success needs.
    abandoned: Mutex<HashMap<u64, String>>,
    next_id: AtomicU64,
    options: QueueOptions,
}

/// How a [`CallQueue`] treats its calls.
#[derive(Clone)]
pub struct QueueOptions {
    /// How long a caller waits for the reply; `None` (embedded) waits as long
    /// as the application takes.
    pub timeout: Option<Duration>,
    /// Calls waiting for a worker beyond this fail at once as unavailable
    /// rather than queueing without bound (Disconnects are never refused).
    pub capacity: usize,
    /// A call still running after this is logged and counted as slow.
    pub slow_after: Duration,
    pub metrics: Arc<Metrics>,
}

impl QueueOptions {
    pub fn new(timeout: Option<Duration>, capacity: usize) -> Self {
        QueueOptions {
            timeout,
            capacity,
            slow_after: Duration::from_secs(5),
            metrics: Arc::new(Metrics::new()),
        }
    }
}

impl CallQueue {
    pub fn new(options: QueueOptions) -> Arc<CallQueue> {
        Arc::new(CallQueue {
            queue: Mutex::new(Queue {
                calls: VecDeque::new(),
                exempt: 0,
                closed: false,
                interrupts: 0,
            }),
            ready: Condvar::new(),
            waiting: Mutex::new(HashMap::new()),
            abandoned: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            options,
        })
    }

    /// Takes the next call, waiting up to `wait`. `None` when the wait ran
    /// out, the queue was interrupted (see [`CallQueue::interrupt`]) or closed.
    pub fn next_call(&self, wait: Duration) -> Option<Call> {
        self.next_calls(wait, 1).pop()
    }

    /// Takes up to `max` queued calls without waiting (empty when none).
    /// A worker that already runs (holding Ruby's GVL) takes work this way
    /// before it pays for releasing the GVL and waiting.
    pub fn take_calls(&self, max: usize) -> Vec<Call> {
        lock(&self.queue).take(max)
    }

    /// Like [`CallQueue::next_call`], taking up to `max` calls at once once
    /// at least one is there: under load a worker serves a batch per wake-up.
    pub fn next_calls(&self, wait: Duration, max: usize) -> Vec<Call> {
        let deadline = Instant::now() + wait;
        let mut queue = lock(&self.queue);
        let interrupts = queue.interrupts;
        loop {
            if !queue.calls.is_empty() {
                return queue.take(max.max(1));
            }
            if queue.closed || queue.interrupts != interrupts {
                return Vec::new();
            }
            let now = Instant::now();
            if now >= deadline {
                return Vec::new();
            }
            queue = self
                .ready
                .wait_timeout(queue, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Wakes every waiting worker with `None` (an interrupt from the host,
    /// such as Ruby's unblock function on Thread#kill or Ctrl-C).
    pub fn interrupt(&self) {
        lock(&self.queue).interrupts += 1;
        self.ready.notify_all();
    }

    /// Stops taking calls: workers get `None`, queued and new calls fail.
    pub fn close(&self) {
        let dropped: Vec<Call> = {
            let mut queue = lock(&self.queue);
            queue.closed = true;
            let all = queue.calls.len();
            queue.take(all)
        };
        self.ready.notify_all();
        let mut waiting = lock(&self.waiting);
        for call in dropped {
            waiting.remove(&call.id);
        }
    }

    pub fn is_closed(&self) -> bool {
        lock(&self.queue).closed
    }

    /// Calls queued and not yet taken by a worker.
    pub fn backlog(&self) -> usize {
        lock(&self.queue).calls.len()
    }

    /// The kind of reply call `id` expects, while anyone needs it (its
    /// caller waits, or it is a stateful connect whose late success needs a
    /// Disconnect); `None` when nobody does.
    pub fn kind_of(&self, id: u64) -> Option<CallKind> {
        if let Some(waiter) = lock(&self.waiting).get(&id) {
            return Some(waiter.kind);
        }
        lock(&self.abandoned)
            .contains_key(&id)
            .then_some(CallKind::Connect)
    }

    /// Answers a call. Returns false when nobody waits for it any more (it
    /// timed out, or the queue closed). A stateful connect that succeeds
    /// after its caller gave up gets a Disconnect, so the application does
    /// not keep a connection for a socket that is gone.
    pub fn reply(&self, id: u64, reply: Reply) -> bool {
        if let Some(waiter) = lock(&self.waiting).remove(&id) {
            return waiter.reply.send(reply).is_ok();
        }
        let abandoned = lock(&self.abandoned).remove(&id);
        if let (Some(sid), Reply::Connect(connected)) = (abandoned, &reply)
            && connected.status == crate::controller::Status::Success
        {
            let request = DisconnectRequest {
                identifiers: connected.identifiers.clone(),
                subscriptions: Vec::new(),
                env: Env::default(),
            };
            self.enqueue(Call {
                id: self.next_id(),
                sid,
                stateless: false,
                request: Request::Disconnect(request),
            });
        }
        false
    }

    fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Queues a call nobody waits for (it still runs).
    fn enqueue(&self, call: Call) {
        let mut queue = lock(&self.queue);
        if !queue.closed {
            queue.push(call);
            drop(queue);
            self.ready.notify_one();
        }
    }

    /// Queues a call and waits for its reply (up to the timeout, if any).
    ///
    /// Disconnect calls are never refused for a full backlog and stay queued
    /// when their caller stops waiting: the application's `unsubscribed` and
    /// `disconnect` callbacks run late rather than never.
    pub async fn submit(
        &self,
        sid: &str,
        stateless: bool,
        request: Request,
    ) -> Result<Reply, CallError> {
        let id = self.next_id();
        let is_disconnect = matches!(request, Request::Disconnect(_));
        let request_kind = request.kind();
        let request_about = request.describe();
        let stateful_connect = !stateless && matches!(request, Request::Connect(_));
        let (tx, rx) = oneshot::channel();
        {
            let mut queue = lock(&self.queue);
            if queue.closed {
                return Err(CallError::Unavailable(
                    "the application's workers have stopped".into(),
                ));
            }
            let refusable = !matches!(request, Request::Disconnect(_) | Request::Stream(_));
            if refusable && queue.refusable() >= self.options.capacity {
                return Err(CallError::Unavailable(format!(
                    "{} calls already wait for a worker",
                    queue.calls.len()
                )));
            }
            lock(&self.waiting).insert(
                id,
                Waiter {
                    reply: tx,
                    kind: request_kind,
                    sid: sid.to_owned(),
                    stateful_connect,
                },
            );
            queue.push(Call {
                id,
                sid: sid.to_owned(),
                stateless,
                request,
            });
        }
        self.ready.notify_one();
        // Dropped on every way out (reply, timeout, the caller cancelled).
        let _give_up = GiveUp {
            queue: self,
            id,
            keep_queued: is_disconnect,
        };
        let (kind, about) = (request_kind, request_about);
        let waited = self.wait(rx, sid, kind, &about);
        let reply = match self.options.timeout {
            Some(limit) => match tokio::time::timeout(limit, waited).await {
                Ok(r) => r,
                Err(_) => return Err(CallError::Timeout),
            },
            None => waited.await,
        };
        reply.map_err(|_| CallError::Unavailable("the call was dropped: workers stopped".into()))
    }

    /// Waits for a reply; a call still running after `slow_after` is logged
    /// and counted once, then waited for as long as it takes.
    async fn wait(
        &self,
        rx: oneshot::Receiver<Reply>,
        sid: &str,
        kind: CallKind,
        about: &str,
    ) -> Result<Reply, oneshot::error::RecvError> {
        tokio::pin!(rx);
        let started = Instant::now();
        match tokio::time::timeout(self.options.slow_after, &mut rx).await {
            Ok(reply) => reply,
            Err(_) => {
                self.options.metrics.slow_calls.inc();
                warn!(
                    sid,
                    kind = kind.as_str(),
                    call = about,
                    after_s = self.options.slow_after.as_secs_f64(),
                    "application call still running"
                );
                let reply = rx.await;
                info!(
                    sid,
                    kind = kind.as_str(),
                    call = about,
                    took_s = started.elapsed().as_secs_f64(),
                    "slow application call finished"
                );
                reply
            }
        }
    }

    /// The caller of call `id` stopped waiting.
    fn give_up(&self, id: u64, keep_queued: bool) {
        let Some(waiter) = lock(&self.waiting).remove(&id) else {
            return;
        };
        let mut queue = lock(&self.queue);
        let queued = queue.calls.iter().position(|c| c.id == id);
        match queued {
            // Nobody took it: nobody will run it (unless it must run anyway).
            Some(at) if !keep_queued => queue.remove(at),
            Some(_) => {}
            None if waiter.stateful_connect => {
                drop(queue);
                let mut abandoned = lock(&self.abandoned);
                if abandoned.len() >= MAX_ABANDONED {
                    abandoned.clear();
                }
                abandoned.insert(id, waiter.sid);
            }
            None => {}
        }
    }
}

struct GiveUp<'a> {
    queue: &'a CallQueue,
    id: u64,
    keep_queued: bool,
}

impl Drop for GiveUp<'_> {
    fn drop(&mut self) {
        self.queue.give_up(self.id, self.keep_queued);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::{ConnectReply, Controller, StateChanges, Status, StreamMessage};
    use futures_util::future::BoxFuture;

    /// These tests call the queue as embedded sessions do.
    impl Controller for Arc<CallQueue> {
        fn call(
            &self,
            sid: &str,
            request: Request,
        ) -> BoxFuture<'static, Result<Reply, CallError>> {
            let (queue, sid) = (self.clone(), sid.to_owned());
            Box::pin(async move { queue.submit(&sid, false, request).await })
        }
    }

    fn connected(identifiers: &str) -> Reply {
        Reply::Connect(ConnectReply {
            status: Status::Success,
            identifiers: identifiers.into(),
            transmissions: vec![],
            error_msg: String::new(),
            state: StateChanges::default(),
            handshake: None,
            disconnect_interest: true,
        })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn worker_threads_answer_calls() {
        let queue = CallQueue::new(QueueOptions::new(Some(Duration::from_secs(2)), 16));
        let q = queue.clone();
        let worker = std::thread::spawn(move || {
            let mut served = 0;
            while let Some(call) = q.next_call(Duration::from_millis(500)) {
                assert_eq!(call.request.kind(), CallKind::Connect);
                assert!(!call.stateless);
                assert!(q.reply(call.id, connected(&call.sid)));
                served += 1;
            }
            served
        });
        for i in 0..5 {
            let reply = queue
                .connect(&format!("s{i}"), Env::default())
                .await
                .unwrap();
            assert_eq!(reply.identifiers, format!("s{i}"));
        }
        queue.close();
        assert_eq!(worker.join().unwrap(), 5);
        assert!(matches!(
            queue.connect("late", Env::default()).await,
            Err(CallError::Unavailable(_))
        ));
    }

    #[tokio::test]
    async fn unanswered_calls_time_out_and_late_replies_are_dropped() {
        let queue = CallQueue::new(QueueOptions::new(Some(Duration::from_millis(100)), 16));
        let started = Instant::now();
        assert_eq!(
            queue.connect("s", Env::default()).await,
            Err(CallError::Timeout)
        );
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!(queue.backlog(), 0, "a timed-out call leaves the queue");
        assert!(!queue.reply(1, connected("late")));
    }

    #[test]
    fn interrupt_and_close_wake_waiting_workers() {
        let queue = CallQueue::new(QueueOptions::new(Some(Duration::from_secs(1)), 16));
        let q = queue.clone();
        let waiter = std::thread::spawn(move || {
            let started = Instant::now();
            let got = q.next_call(Duration::from_secs(30));
            (got, started.elapsed())
        });
        // The waiter may not be waiting yet (an interrupt only wakes those
        // that are): interrupt until it has returned.
        while !waiter.is_finished() {
            queue.interrupt();
            std::thread::sleep(Duration::from_millis(10));
        }
        let (got, waited) = waiter.join().unwrap();
        assert!(got.is_none());
        assert!(waited < Duration::from_secs(5));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_connect_answered_too_late_gets_a_disconnect() {
        let queue = CallQueue::new(QueueOptions::new(Some(Duration::from_millis(100)), 16));
        let q = queue.clone();
        let worker = std::thread::spawn(move || {
            let call = q.next_call(Duration::from_secs(5)).unwrap();
            std::thread::sleep(Duration::from_millis(300));
            assert!(
                !q.reply(call.id, connected("late-user")),
                "nobody waits any more"
            );
            q.next_call(Duration::from_secs(5))
        });
        assert_eq!(
            queue.connect("s1", Env::default()).await,
            Err(CallError::Timeout)
        );
        let follow_up = tokio::task::spawn_blocking(move || worker.join().unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(follow_up.sid, "s1");
        let Request::Disconnect(d) = follow_up.request else {
            panic!("expected a Disconnect")
        };
        assert_eq!(d.identifiers, "late-user");
    }

    #[tokio::test]
    async fn disconnects_are_never_refused_and_stay_queued_after_a_timeout() {
        let queue = CallQueue::new(QueueOptions::new(Some(Duration::from_millis(50)), 1));
        let q = queue.clone();
        let blocked = tokio::spawn(async move { q.connect("a", Env::default()).await });
        tokio::time::sleep(Duration::from_millis(10)).await;
        let request = DisconnectRequest {
            identifiers: "x".into(),
            subscriptions: vec![],
            env: Env::default(),
        };
        assert_eq!(
            queue.disconnect("b", request).await,
            Err(CallError::Timeout)
        );
        let _ = blocked.await;
        let call = queue
            .next_call(Duration::from_millis(10))
            .expect("the Disconnect is still queued");
        assert_eq!(call.sid, "b");
    }

    #[tokio::test]
    async fn a_cancelled_call_leaves_nothing_behind() {
        let queue = CallQueue::new(QueueOptions::new(Some(Duration::from_secs(10)), 16));
        let q = queue.clone();
        let pending = tokio::spawn(async move { q.connect("a", Env::default()).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(queue.backlog(), 1);
        pending.abort();
        let _ = pending.await;
        assert_eq!(queue.backlog(), 0);
        assert!(lock(&queue.waiting).is_empty());
    }

    #[tokio::test]
    async fn stream_messages_are_never_refused_for_a_full_backlog() {
        let queue = CallQueue::new(QueueOptions::new(None, 1));
        let q = queue.clone();
        let first = tokio::spawn(async move { q.connect("a", Env::default()).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        let message = StreamMessage {
            identifier: Arc::from("i"),
            stream: Arc::from("s"),
            data: Arc::from("d"),
        };
        let q = queue.clone();
        let streamed = tokio::spawn(async move { q.stream_message("b", message).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(
            queue.backlog(),
            2,
            "the stream call is queued behind the full backlog"
        );
        assert!(matches!(
            queue.connect("c", Env::default()).await,
            Err(CallError::Unavailable(_))
        ));
        queue.close();
        let _ = (first.await, streamed.await);
    }

    #[tokio::test]
    async fn a_full_backlog_fails_fast() {
        let queue = CallQueue::new(QueueOptions::new(Some(Duration::from_secs(5)), 1));
        let q = queue.clone();
        let first = tokio::spawn(async move { q.connect("a", Env::default()).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let started = Instant::now();
        assert!(matches!(
            queue.connect("b", Env::default()).await,
            Err(CallError::Unavailable(_))
        ));
        assert!(started.elapsed() < Duration::from_millis(500));
        queue.close();
        assert!(first.await.unwrap().is_err());
    }
}
