//! The in-process controller: application calls handed to worker threads of
//! the host process (the gem's Ruby worker threads) and their replies handed
//! back.
//!
//! Sessions call [`CallQueue`] through the [`Controller`] trait like any other
//! controller. Each call is queued as owned Rust data; a worker thread takes
//! it with [`CallQueue::next_call`] (a blocking wait that never touches the
//! async runtime, so a thread that may not enter tokio can call it), runs the
//! application code, and answers with [`CallQueue::reply`]. A call nobody
//! answers within `rpc_request_timeout` fails with a timeout, so a stuck or
//! killed worker costs one call, never a session or the server.
//!
//! The same queue serves the gem's gRPC server ([`crate::rpc_server`]): its
//! calls are marked `stateless`, as AnyCable's RPC expects.

use crate::controller::{
    CallError, Command, CommandReply, ConnectReply, Controller, DisconnectRequest, Env,
};
use futures_util::future::BoxFuture;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// What the application is asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Connect(Env),
    Command(Command),
    Disconnect(DisconnectRequest),
}

impl Request {
    pub fn kind(&self) -> &'static str {
        match self {
            Request::Connect(_) => "connect",
            Request::Command(_) => "command",
            Request::Disconnect(_) => "disconnect",
        }
    }
}

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

/// The application's answer to a [`Call`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Connect(ConnectReply),
    Command(CommandReply),
    Disconnect(Result<(), String>),
}

struct Queue {
    calls: VecDeque<Call>,
    closed: bool,
    /// Bumped by [`CallQueue::interrupt`]: waiting workers return early.
    interrupts: u64,
}

pub struct CallQueue {
    queue: Mutex<Queue>,
    ready: Condvar,
    waiting: Mutex<HashMap<u64, oneshot::Sender<Reply>>>,
    next_id: AtomicU64,
    timeout: Duration,
    capacity: usize,
}

impl CallQueue {
    /// `capacity` bounds calls waiting for a worker; past it, calls fail at
    /// once as unavailable rather than queueing without bound.
    pub fn new(timeout: Duration, capacity: usize) -> Arc<CallQueue> {
        Arc::new(CallQueue {
            queue: Mutex::new(Queue {
                calls: VecDeque::new(),
                closed: false,
                interrupts: 0,
            }),
            ready: Condvar::new(),
            waiting: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            timeout,
            capacity,
        })
    }

    /// Takes the next call, waiting up to `wait`. `None` when the wait ran
    /// out, the queue was interrupted (see [`CallQueue::interrupt`]) or closed.
    pub fn next_call(&self, wait: Duration) -> Option<Call> {
        let deadline = Instant::now() + wait;
        let mut queue = lock(&self.queue);
        let interrupts = queue.interrupts;
        loop {
            if let Some(call) = queue.calls.pop_front() {
                return Some(call);
            }
            if queue.closed || queue.interrupts != interrupts {
                return None;
            }
            let now = Instant::now();
            if now >= deadline {
                return None;
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
            queue.calls.drain(..).collect()
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

    /// Answers a call. Returns false when nobody waits for it any more (it
    /// timed out, or the queue closed).
    pub fn reply(&self, id: u64, reply: Reply) -> bool {
        match lock(&self.waiting).remove(&id) {
            Some(tx) => tx.send(reply).is_ok(),
            None => false,
        }
    }

    /// Queues a call and waits for its reply, up to the timeout.
    pub async fn call(
        &self,
        sid: &str,
        stateless: bool,
        request: Request,
    ) -> Result<Reply, CallError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        {
            let mut queue = lock(&self.queue);
            if queue.closed {
                return Err(CallError::Unavailable(
                    "the application's workers have stopped".into(),
                ));
            }
            if queue.calls.len() >= self.capacity {
                return Err(CallError::Unavailable(format!(
                    "{} calls already wait for a worker",
                    queue.calls.len()
                )));
            }
            lock(&self.waiting).insert(id, tx);
            queue.calls.push_back(Call {
                id,
                sid: sid.to_owned(),
                stateless,
                request,
            });
        }
        self.ready.notify_one();
        match tokio::time::timeout(self.timeout, rx).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(_)) => Err(CallError::Unavailable(
                "the call was dropped: workers stopped".into(),
            )),
            Err(_) => {
                lock(&self.waiting).remove(&id);
                // Still queued (no worker took it)? Then nobody will run it.
                lock(&self.queue).calls.retain(|c| c.id != id);
                Err(CallError::Timeout)
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn mismatch(expected: &str, got: &Reply) -> CallError {
    CallError::Internal(format!("expected a {expected} reply, got {got:?}"))
}

/// Embedded sessions: stateful calls through the queue.
impl Controller for Arc<CallQueue> {
    fn connect(&self, sid: &str, env: Env) -> BoxFuture<'static, Result<ConnectReply, CallError>> {
        let (queue, sid) = (self.clone(), sid.to_owned());
        Box::pin(async move {
            match queue.call(&sid, false, Request::Connect(env)).await? {
                Reply::Connect(r) => Ok(r),
                other => Err(mismatch("connect", &other)),
            }
        })
    }

    fn command(
        &self,
        sid: &str,
        command: Command,
    ) -> BoxFuture<'static, Result<CommandReply, CallError>> {
        let (queue, sid) = (self.clone(), sid.to_owned());
        Box::pin(async move {
            match queue.call(&sid, false, Request::Command(command)).await? {
                Reply::Command(r) => Ok(r),
                other => Err(mismatch("command", &other)),
            }
        })
    }

    fn disconnect(
        &self,
        sid: &str,
        request: DisconnectRequest,
    ) -> BoxFuture<'static, Result<(), CallError>> {
        let (queue, sid) = (self.clone(), sid.to_owned());
        Box::pin(async move {
            match queue
                .call(&sid, false, Request::Disconnect(request))
                .await?
            {
                Reply::Disconnect(r) => r.map_err(CallError::Internal),
                other => Err(mismatch("disconnect", &other)),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::{StateChanges, Status};

    fn connected(identifiers: &str) -> Reply {
        Reply::Connect(ConnectReply {
            status: Status::Success,
            identifiers: identifiers.into(),
            transmissions: vec![],
            error_msg: String::new(),
            state: StateChanges::default(),
        })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn worker_threads_answer_calls() {
        let queue = CallQueue::new(Duration::from_secs(2), 16);
        let q = queue.clone();
        let worker = std::thread::spawn(move || {
            let mut served = 0;
            while let Some(call) = q.next_call(Duration::from_millis(500)) {
                assert_eq!(call.request.kind(), "connect");
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
        let queue = CallQueue::new(Duration::from_millis(100), 16);
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
        let queue = CallQueue::new(Duration::from_secs(1), 16);
        let q = queue.clone();
        let waiter = std::thread::spawn(move || {
            let started = Instant::now();
            let got = q.next_call(Duration::from_secs(30));
            (got, started.elapsed())
        });
        std::thread::sleep(Duration::from_millis(50));
        queue.interrupt();
        let (got, waited) = waiter.join().unwrap();
        assert!(got.is_none());
        assert!(waited < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn a_full_backlog_fails_fast() {
        let queue = CallQueue::new(Duration::from_secs(5), 1);
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
