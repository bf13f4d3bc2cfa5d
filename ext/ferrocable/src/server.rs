//! `Ferrocable::Native::Server`: one Ferrocable server in this process,
//! either the WebSocket server (embedded mode) or the `anycable.RPC` server
//! (`rake ferrocable:rpc`). Both hand application calls to Ruby worker
//! threads through `next_call` / `reply`.
//!
//! The tokio runtime is created by `start`, on threads Ruby did not create
//! and that never touch a Ruby value, and is gone after `stop`. A server
//! started in a parent process is inert in a forked child: the child starts
//! its own.
//!
//! `start` and `stop` wait for the runtime thread with the GVL released and
//! without holding the server's lock (another Ruby thread asking `running?`
//! meanwhile must not stop the whole VM), and Ruby can interrupt those waits
//! (Thread#kill, Thread#raise, Ctrl-C). An interrupted start or stop still
//! leaves the server consistent: the runtime is told to stop and ends by
//! itself; until it has, `running?` says whether it still serves calls.

use crate::convert::{ReplyHash, call_to_hash};
use crate::errors;
use crate::gvl::{Latch, wait, without_gvl};
use ferrocable::broadcast::{Publication, Publish, Reach};
use ferrocable::call_queue::{CallQueue, QueueOptions};
use ferrocable::config::Config;
use ferrocable::controller::Controller;
use ferrocable::embedded::Embedded;
use ferrocable::metrics::Metrics;
use ferrocable::node::Node;
use magnus::{Error, RArray, RHash, Ruby};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    WebSocket,
    Rpc,
}

/// How long `start` waits for the runtime thread to listen.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// What the runtime thread reports once it listens (or why it cannot).
type Started = Result<(u16, Option<Arc<Node>>), String>;

/// One run of the runtime thread, from `start` until the thread has ended.
struct Run {
    pid: u32,
    queue: Arc<CallQueue>,
    /// The server's metrics, counted by the queue (slow calls) too.
    metrics: Arc<Metrics>,
    started: Latch<Started>,
    /// Set by the runtime thread as it ends (whether the graceful shutdown
    /// finished in time); the call queue is closed by then.
    finished: Latch<bool>,
    /// Taken by the first stop request.
    stop: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
}

impl Run {
    /// Asks the runtime to shut down gracefully; later calls do nothing.
    fn request_stop(&self) {
        if let Some(stop) = lock(&self.stop).take() {
            let _ = stop.send(());
        }
    }

    fn is_finished(&self) -> bool {
        self.finished.get().is_some()
    }
}

/// Where the server is. Locked only for short, Rust-only moments.
enum Slot {
    Empty,
    /// A `start` waits for this run to listen.
    Starting(Arc<Run>),
    /// Listening and serving calls (also while a `stop` waits for it).
    Serving {
        run: Arc<Run>,
        port: u16,
        node: Option<Arc<Node>>,
    },
    /// Told to stop before it served (an interrupted or stopped start): it
    /// ends by itself, and the next `start` waits for that.
    Abandoned(Arc<Run>),
}

impl Slot {
    fn run(&self) -> Option<&Arc<Run>> {
        match self {
            Slot::Empty => None,
            Slot::Starting(run) | Slot::Serving { run, .. } | Slot::Abandoned(run) => Some(run),
        }
    }

    /// Forgets a run that has ended, or that a parent process started
    /// (inherited through fork: that runtime's threads do not exist here,
    /// so nothing of it is dropped).
    fn settle(&mut self) {
        let Some(run) = self.run() else { return };
        if run.pid != std::process::id() {
            std::mem::forget(std::mem::replace(self, Slot::Empty));
        } else if run.is_finished() {
            *self = Slot::Empty;
        }
    }
}

#[magnus::wrap(class = "Ferrocable::Native::Server", free_immediately, size)]
pub struct NativeServer {
    config: Arc<Config>,
    mode: Mode,
    slot: Mutex<Slot>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// How a `start` ended, decided under the lock; errors are built after it.
enum StartOutcome {
    Listening(u16),
    StoppedMeanwhile,
    Failed(String),
    TimedOut,
    Interrupted(Error),
}

impl NativeServer {
    /// `Server.new(args, mode)`: `args` are anycable-go style flags
    /// (`["--port=8080", ...]`), read together with `ANYCABLE_*` variables;
    /// `mode` is `"websocket"` or `"rpc"`.
    pub fn new(ruby: &Ruby, args: RArray, mode: String) -> Result<Self, Error> {
        let args: Vec<String> = args.to_vec()?;
        let mut config = Config::load(std::iter::once("ferrocable".to_owned()).chain(args))
            .map_err(|e| Error::new(errors::config_error(ruby), e.to_string()))?;
        // Said at start only by a server that is one of several processes
        // (`reuse_port`: a Puma cluster worker), not by every application.
        if let Some(one_node) = config.one_node_broadcasts_warning() {
            config.warnings.retain(|w| *w != one_node);
        }
        let mode = match mode.as_str() {
            "websocket" => Mode::WebSocket,
            "rpc" => Mode::Rpc,
            other => {
                return Err(Error::new(
                    ruby.exception_arg_error(),
                    format!("unknown mode {other:?}"),
                ));
            }
        };
        Ok(NativeServer {
            config: Arc::new(config),
            mode,
            slot: Mutex::new(Slot::Empty),
        })
    }

    /// Starts serving; returns the bound port. Raises when already running
    /// or starting, when the address cannot be bound, or when interrupted
    /// (then the server ends up stopped).
    pub fn start(ruby: &Ruby, rb_self: &Self, reuse_port: bool) -> Result<u16, Error> {
        let config = rb_self.config.clone();
        let (run, stop_rx) = loop {
            let pending = {
                let mut slot = lock(&rb_self.slot);
                slot.settle();
                match &*slot {
                    Slot::Starting(_) => Err("the server is already starting"),
                    Slot::Serving { .. } => Err("the server is already running"),
                    Slot::Abandoned(run) => Ok(run.clone()),
                    Slot::Empty => {
                        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
                        // Embedded calls wait as long as the application
                        // takes (Action Cable puts no limit on channel code);
                        // the RPC server keeps the RPC client's deadline.
                        // Queued calls beyond the capacity fail fast instead
                        // of piling up.
                        let metrics = Arc::new(config.metrics());
                        let timeout =
                            (rb_self.mode == Mode::Rpc).then(|| config.rpc_call_timeout());
                        let mut options =
                            QueueOptions::new(timeout, config.rpc_concurrency.max(1) * 1024);
                        options.metrics = metrics.clone();
                        options.slow_after = config.slow_call_threshold();
                        let run = Arc::new(Run {
                            pid: std::process::id(),
                            queue: CallQueue::new(options),
                            metrics,
                            started: Latch::new(),
                            finished: Latch::new(),
                            stop: Mutex::new(Some(stop_tx)),
                        });
                        *slot = Slot::Starting(run.clone());
                        break (run, stop_rx);
                    }
                }
            };
            match pending {
                // A run that is still winding down holds the port: wait for it.
                Ok(previous) => wait(ruby, &previous.finished, None)?,
                Err(e) => return Err(Error::new(errors::error(ruby), e)),
            };
        };
        ferrocable::logging::init(&config);
        let mode = rb_self.mode;
        let thread_run = run.clone();
        let spawned = std::thread::Builder::new()
            .name("ferrocable".into())
            .spawn(move || {
                let run = thread_run;
                // Whatever happens here, the Ruby threads waiting for this run
                // must hear that it ended.
                let finished = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    serve(
                        config,
                        mode,
                        run.queue.clone(),
                        run.metrics.clone(),
                        reuse_port,
                        &run.started,
                        stop_rx,
                    )
                }))
                .unwrap_or(false);
                run.started
                    .set(Err("the server thread ended before it listened".into()));
                run.queue.close();
                run.finished.set(finished);
            });
        if let Err(e) = spawned {
            let mut slot = lock(&rb_self.slot);
            if matches!(&*slot, Slot::Starting(r) if Arc::ptr_eq(r, &run)) {
                *slot = Slot::Empty;
            }
            drop(slot);
            return Err(Error::new(
                errors::error(ruby),
                format!("cannot start the server thread: {e}"),
            ));
        }
        let waited = wait(ruby, &run.started, Some(START_TIMEOUT));
        let outcome = {
            let mut slot = lock(&rb_self.slot);
            let ours = matches!(&*slot, Slot::Starting(r) if Arc::ptr_eq(r, &run));
            let outcome = match waited {
                Ok(Some(Ok((port, node)))) if ours => {
                    *slot = Slot::Serving {
                        run: run.clone(),
                        port,
                        node,
                    };
                    StartOutcome::Listening(port)
                }
                Ok(Some(Ok(_))) => StartOutcome::StoppedMeanwhile,
                Ok(Some(Err(e))) => StartOutcome::Failed(e),
                Ok(None) => StartOutcome::TimedOut,
                Err(e) => StartOutcome::Interrupted(e),
            };
            if !matches!(outcome, StartOutcome::Listening(_)) {
                run.request_stop();
                if ours {
                    *slot = Slot::Abandoned(run.clone());
                }
            }
            outcome
        };
        match outcome {
            StartOutcome::Listening(port) => Ok(port),
            StartOutcome::StoppedMeanwhile => Err(Error::new(
                errors::error(ruby),
                "the server was stopped while it started",
            )),
            StartOutcome::Failed(e) => Err(Error::new(errors::error(ruby), e)),
            StartOutcome::TimedOut => Err(Error::new(
                errors::error(ruby),
                format!(
                    "the server did not start within {} s",
                    START_TIMEOUT.as_secs()
                ),
            )),
            StartOutcome::Interrupted(e) => Err(e),
        }
    }

    /// Graceful stop: clients get `server_restart`, Disconnect calls are made
    /// (worker threads must keep running meanwhile), within
    /// `shutdown_timeout`. Returns whether everything finished in time.
    /// Interrupted (Thread#kill, Ctrl-C), it raises at once and the shutdown
    /// goes on by itself; `running?` turns false when it is done.
    pub fn stop(ruby: &Ruby, rb_self: &Self) -> Result<bool, Error> {
        let run = {
            let mut slot = lock(&rb_self.slot);
            slot.settle();
            match &*slot {
                Slot::Empty => return Ok(true),
                Slot::Starting(run) => {
                    // The start in progress fails; its runtime ends by itself.
                    let run = run.clone();
                    *slot = Slot::Abandoned(run.clone());
                    run
                }
                // The call queue stays reachable while stopping: workers
                // must answer the Disconnect calls that shutdown makes.
                Slot::Serving { run, .. } | Slot::Abandoned(run) => run.clone(),
            }
        };
        run.request_stop();
        let finished = wait(ruby, &run.finished, None)?.unwrap_or(false);
        lock(&rb_self.slot).settle();
        Ok(finished)
    }

    fn current(&self) -> Option<(Arc<CallQueue>, Option<Arc<Node>>)> {
        let mut slot = lock(&self.slot);
        slot.settle();
        match &*slot {
            Slot::Serving { run, node, .. } => Some((run.queue.clone(), node.clone())),
            _ => None,
        }
    }

    pub fn is_running(&self) -> bool {
        self.current().is_some()
    }

    pub fn port(&self) -> Option<u16> {
        let mut slot = lock(&self.slot);
        slot.settle();
        match &*slot {
            Slot::Serving { port, .. } => Some(*port),
            _ => None,
        }
    }

    /// The next application call as a Hash, or nil after `timeout` seconds,
    /// on an interrupt (Thread#kill, signals), or when the server stopped.
    pub fn next_call(ruby: &Ruby, rb_self: &Self, timeout: f64) -> Result<Option<RHash>, Error> {
        let Some((queue, _)) = rb_self.current() else {
            return Ok(None);
        };
        let wait = Duration::from_secs_f64(timeout.clamp(0.0, 3600.0));
        let q = queue.clone();
        let call = without_gvl(ruby, move || q.next_call(wait), || queue.interrupt())?;
        call.map(|c| call_to_hash(ruby, c)).transpose()
    }

    /// Up to `max` calls (an Array of Hashes, empty after `timeout` seconds,
    /// an interrupt or a stop). Calls already queued are taken without
    /// releasing the GVL; only an idle worker waits with it released.
    pub fn next_calls(
        ruby: &Ruby,
        rb_self: &Self,
        timeout: f64,
        max: usize,
    ) -> Result<RArray, Error> {
        let out = ruby.ary_new();
        let Some((queue, _)) = rb_self.current() else {
            return Ok(out);
        };
        let mut calls = queue.take_calls(max);
        if calls.is_empty() {
            let wait = Duration::from_secs_f64(timeout.clamp(0.0, 3600.0));
            let q = queue.clone();
            calls = without_gvl(ruby, move || q.next_calls(wait, max), || queue.interrupt())?;
        }
        for call in calls {
            out.push(call_to_hash(ruby, call)?)?;
        }
        Ok(out)
    }

    /// Answers call `id` with a reply Hash (read as the kind of reply that
    /// call expects). Raises for a Hash that is not a reply; returns false
    /// when nobody waits any more (the call timed out).
    pub fn reply(ruby: &Ruby, rb_self: &Self, id: u64, reply: RHash) -> Result<bool, Error> {
        let reply = ReplyHash::read(ruby, reply)?;
        let Some((queue, _)) = rb_self.current() else {
            return Ok(false);
        };
        Ok(queue
            .kind_of(id)
            .is_some_and(|kind| queue.reply(id, reply.into_reply(kind))))
    }

    fn node(&self, ruby: &Ruby) -> Result<Arc<Node>, Error> {
        self.current().and_then(|(_, node)| node).ok_or_else(|| {
            Error::new(
                errors::error(ruby),
                "the WebSocket server is not running in this process",
            )
        })
    }

    /// Broadcasts `data` to the subscribers of `stream`: a broadcast made
    /// in this process (the gem's in-process broadcaster), delivered on
    /// this server and passed on to the other nodes over `pubsub`.
    pub fn broadcast(
        ruby: &Ruby,
        rb_self: &Self,
        stream: String,
        data: String,
    ) -> Result<(), Error> {
        rb_self
            .node(ruby)?
            .publish(Publication::broadcast(stream, data));
        Ok(())
    }

    /// Delivers `data` to the subscribers of `stream` on this server only:
    /// a broadcast every process receives by itself (the application's
    /// `cable.yml` adapter, relayed), so passing it on would repeat it.
    pub fn deliver(ruby: &Ruby, rb_self: &Self, stream: String, data: String) -> Result<(), Error> {
        rb_self.node(ruby)?.publish_from(
            Publication::broadcast(stream, data),
            Reach::EveryNode { key: None },
        );
        Ok(())
    }

    /// Publishes a payload (the `__anycable__` JSON format) made in this
    /// process: delivered here and passed on to the other nodes.
    pub fn publish(ruby: &Ruby, rb_self: &Self, payload: String) -> Result<(), Error> {
        rb_self
            .node(ruby)?
            .publish_payload(payload.as_bytes(), "ruby")
            .map_err(|e| Error::new(ruby.exception_arg_error(), e.to_string()))
    }

    /// Sends `data` (a frame, as a channel's transmit encodes it) to session
    /// `sid` if it is connected to this server.
    pub fn transmit(ruby: &Ruby, rb_self: &Self, sid: String, data: String) -> Result<bool, Error> {
        Ok(rb_self.node(ruby)?.transmit(&sid, data))
    }

    /// Closes session `sid` after what is queued for it (Action Cable's
    /// `websocket.close` outside of a call: a remote disconnect arriving
    /// through the app's subscription adapter). Returns whether it is here.
    pub fn close(ruby: &Ruby, rb_self: &Self, sid: String) -> Result<bool, Error> {
        Ok(rb_self.node(ruby)?.close(&sid))
    }

    pub fn client_count(&self) -> usize {
        self.current()
            .and_then(|(_, n)| n)
            .map_or(0, |n| n.session_count())
    }

    /// Prometheus text of this server's metrics.
    pub fn metrics(ruby: &Ruby, rb_self: &Self) -> Result<String, Error> {
        Ok(rb_self.node(ruby)?.metrics.render())
    }
}

impl Drop for NativeServer {
    fn drop(&mut self) {
        // Ruby's GC runs this (free_immediately): no waiting, no Ruby, and
        // no lock to take (`&mut self` reaches the slot directly). A server
        // collected while running stops its runtime thread without waiting.
        let slot = self.slot.get_mut().unwrap_or_else(|e| e.into_inner());
        slot.settle();
        if let Some(run) = slot.run() {
            run.request_stop();
            run.queue.close();
        }
    }
}

/// The runtime thread: builds tokio, binds, serves until stopped.
fn serve(
    config: Arc<Config>,
    mode: Mode,
    queue: Arc<CallQueue>,
    metrics: Arc<Metrics>,
    reuse_port: bool,
    started: &Latch<Started>,
    stop: tokio::sync::oneshot::Receiver<()>,
) -> bool {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("ferrocable-io")
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            started.set(Err(format!("cannot build the tokio runtime: {e}")));
            return false;
        }
    };
    if reuse_port && let Some(warning) = config.one_node_broadcasts_warning() {
        // One of several processes on this port (a Puma cluster worker).
        tracing::warn!("{warning}");
    }
    runtime.block_on(async move {
        let stopped = async {
            let _ = stop.await;
        };
        match mode {
            Mode::WebSocket => {
                let listener =
                    match ferrocable::server::bind(&config.host, config.port, reuse_port).await {
                        Ok(l) => l,
                        Err(e) => {
                            started.set(Err(format!(
                                "cannot listen on {}:{}: {e}",
                                config.host, config.port
                            )));
                            return false;
                        }
                    };
                let port = listener
                    .local_addr()
                    .map(|a| a.port())
                    .unwrap_or(config.port);
                let controller: Arc<dyn Controller> = Arc::new(Embedded::new(queue));
                let server =
                    match ferrocable::server::Server::start(config.clone(), controller, metrics) {
                        Ok(s) => s,
                        Err(e) => {
                            started.set(Err(e.to_string()));
                            return false;
                        }
                    };
                started.set(Ok((port, Some(server.node.clone()))));
                server.serve(listener, stopped).await
            }
            Mode::Rpc => {
                let (host, port) = split_host_port(&config.rpc_host);
                let listener = match ferrocable::server::bind(&host, port, reuse_port).await {
                    Ok(l) => l,
                    Err(e) => {
                        started.set(Err(format!("cannot listen on {}: {e}", config.rpc_host)));
                        return false;
                    }
                };
                let port = listener.local_addr().map(|a| a.port()).unwrap_or(port);
                started.set(Ok((port, None)));
                ferrocable::rpc::server::serve(listener, queue, stopped)
                    .await
                    .is_ok()
            }
        }
    })
}

fn split_host_port(addr: &str) -> (String, u16) {
    let addr = addr.rsplit_once("://").map_or(addr, |(_, rest)| rest);
    match addr.rsplit_once(':') {
        Some((host, port)) => (
            host.trim_matches(['[', ']']).to_owned(),
            port.parse().unwrap_or(50051),
        ),
        None => (addr.to_owned(), 50051),
    }
}
