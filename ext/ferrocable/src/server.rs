//! `Ferrocable::Native::Server`: one Ferrocable server in this process,
//! either the WebSocket server (embedded mode) or the `anycable.RPC` server
//! (`rake ferrocable:rpc`). Both hand application calls to Ruby worker
//! threads through `next_call` / `reply`.
//!
//! The tokio runtime is created by `start`, on threads Ruby did not create
//! and that never touch a Ruby value, and is gone after `stop`. A server
//! started in a parent process is inert in a forked child: the child starts
//! its own.

use crate::convert::{call_to_hash, reply_from_hash};
use crate::errors;
use crate::gvl::without_gvl;
use ferrocable::broadcast::Publication;
use ferrocable::config::Config;
use ferrocable::controller::Controller;
use ferrocable::embedded::{CallQueue, QueueOptions};
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

/// What the runtime thread reports once it listens (or why it cannot).
type Started = Result<(u16, Option<Arc<Node>>), String>;

struct Running {
    pid: u32,
    queue: Arc<CallQueue>,
    node: Option<Arc<Node>>,
    port: u16,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<bool>>,
}

#[magnus::wrap(class = "Ferrocable::Native::Server", free_immediately, size)]
pub struct NativeServer {
    config: Arc<Config>,
    mode: Mode,
    running: Mutex<Option<Running>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl NativeServer {
    /// `Server.new(args, mode)`: `args` are anycable-go style flags
    /// (`["--port=8080", ...]`), read together with `ANYCABLE_*` variables;
    /// `mode` is `"websocket"` or `"rpc"`.
    pub fn new(ruby: &Ruby, args: RArray, mode: String) -> Result<Self, Error> {
        let args: Vec<String> = args.to_vec()?;
        let config = Config::load(std::iter::once("ferrocable".to_owned()).chain(args))
            .map_err(|e| Error::new(errors::config_error(ruby), e.to_string()))?;
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
            running: Mutex::new(None),
        })
    }

    /// Starts serving; returns the bound port. Raises when already running
    /// or when the address cannot be bound.
    pub fn start(ruby: &Ruby, rb_self: &Self, reuse_port: bool) -> Result<u16, Error> {
        let mut running = lock(&rb_self.running);
        if let Some(r) = running.as_ref() {
            if r.pid == std::process::id() {
                return Err(Error::new(
                    errors::error(ruby),
                    "the server is already running",
                ));
            }
            // Inherited through fork: that runtime's threads do not exist here.
            std::mem::forget(running.take());
        }
        ferrocable::logging::init(&rb_self.config);
        let config = rb_self.config.clone();
        let mode = rb_self.mode;
        // Queued calls beyond this fail fast instead of piling up.
        // Embedded calls wait as long as the application takes (Action Cable
        // puts no limit on channel code); the RPC server keeps the RPC
        // client's deadline. Queued calls beyond the capacity fail fast
        // instead of piling up.
        let metrics = Arc::new(Metrics::new());
        let timeout = (mode == Mode::Rpc).then(|| config.rpc_request_timeout());
        let mut options = QueueOptions::new(timeout, config.rpc_concurrency.max(1) * 1024);
        options.metrics = metrics.clone();
        options.slow_after = config.slow_call_threshold();
        let queue = CallQueue::new(options);
        let (started_tx, started_rx) = std::sync::mpsc::channel::<Started>();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let q = queue.clone();
        let thread = std::thread::Builder::new()
            .name("ferrocable".into())
            .spawn(move || serve(config, mode, q, metrics, reuse_port, started_tx, stop_rx))
            .map_err(|e| {
                Error::new(
                    errors::error(ruby),
                    format!("cannot start the server thread: {e}"),
                )
            })?;
        let started = without_gvl(|| started_rx.recv_timeout(Duration::from_secs(30)), || {});
        match started {
            Ok(Ok((port, node))) => {
                *running = Some(Running {
                    pid: std::process::id(),
                    queue,
                    node,
                    port,
                    stop: Some(stop_tx),
                    thread: Some(thread),
                });
                Ok(port)
            }
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(Error::new(errors::error(ruby), e))
            }
            Err(_) => Err(Error::new(
                errors::error(ruby),
                "the server did not start within 30 s",
            )),
        }
    }

    /// Graceful stop: clients get `server_restart`, Disconnect calls are made
    /// (worker threads must keep running meanwhile), within
    /// `shutdown_timeout`. Returns whether everything finished in time.
    pub fn stop(&self) -> bool {
        // The call queue stays reachable while stopping: workers must answer
        // the Disconnect calls that shutdown makes.
        let (stop, thread) = {
            let mut running = lock(&self.running);
            match running.as_mut() {
                Some(r) if r.pid == std::process::id() => (r.stop.take(), r.thread.take()),
                Some(_) => {
                    std::mem::forget(running.take());
                    return true;
                }
                None => return true,
            }
        };
        if let Some(stop) = stop {
            let _ = stop.send(());
        }
        let finished = without_gvl(
            move || thread.map(|t| t.join().unwrap_or(false)).unwrap_or(true),
            || {},
        );
        if let Some(running) = lock(&self.running).take() {
            running.queue.close();
        }
        finished
    }

    fn current(&self) -> Option<(Arc<CallQueue>, Option<Arc<Node>>)> {
        let running = lock(&self.running);
        running
            .as_ref()
            .filter(|r| r.pid == std::process::id())
            .map(|r| (r.queue.clone(), r.node.clone()))
    }

    pub fn is_running(&self) -> bool {
        self.current().is_some()
    }

    pub fn port(&self) -> Option<u16> {
        let running = lock(&self.running);
        running
            .as_ref()
            .filter(|r| r.pid == std::process::id())
            .map(|r| r.port)
    }

    /// The next application call as a Hash, or nil after `timeout` seconds,
    /// on an interrupt (Thread#kill, signals), or when the server stopped.
    pub fn next_call(ruby: &Ruby, rb_self: &Self, timeout: f64) -> Result<Option<RHash>, Error> {
        let Some((queue, _)) = rb_self.current() else {
            return Ok(None);
        };
        let wait = Duration::from_secs_f64(timeout.clamp(0.0, 3600.0));
        let q = queue.clone();
        let call = without_gvl(move || q.next_call(wait), || queue.interrupt());
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
            calls = without_gvl(move || q.next_calls(wait, max), || queue.interrupt());
        }
        for call in calls {
            out.push(call_to_hash(ruby, call)?)?;
        }
        Ok(out)
    }

    /// Answers call `id` of kind `kind` with a reply Hash. Returns false when
    /// nobody waits any more (the call timed out).
    pub fn reply(
        ruby: &Ruby,
        rb_self: &Self,
        id: u64,
        kind: String,
        reply: RHash,
    ) -> Result<bool, Error> {
        let reply = reply_from_hash(ruby, &kind, reply)?;
        Ok(rb_self
            .current()
            .is_some_and(|(queue, _)| queue.reply(id, reply)))
    }

    fn node(&self, ruby: &Ruby) -> Result<Arc<Node>, Error> {
        self.current().and_then(|(_, node)| node).ok_or_else(|| {
            Error::new(
                errors::error(ruby),
                "the WebSocket server is not running in this process",
            )
        })
    }

    /// Delivers `data` to the subscribers of `stream` on this server.
    pub fn broadcast(
        ruby: &Ruby,
        rb_self: &Self,
        stream: String,
        data: String,
    ) -> Result<(), Error> {
        rb_self.node(ruby)?.publish(Publication::Broadcast {
            stream,
            data,
            exclude_socket: None,
        });
        Ok(())
    }

    /// Delivers a publication payload (the `__anycable__` JSON format).
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
        // A server garbage-collected while running stops its runtime thread
        // without waiting (no GVL games in a finalizer).
        if let Some(mut running) = lock(&self.running).take() {
            if running.pid == std::process::id() {
                if let Some(stop) = running.stop.take() {
                    let _ = stop.send(());
                }
                running.queue.close();
            } else {
                std::mem::forget(running);
            }
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
    started: std::sync::mpsc::Sender<Started>,
    stop: tokio::sync::oneshot::Receiver<()>,
) -> bool {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("ferrocable-io")
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            let _ = started.send(Err(format!("cannot build the tokio runtime: {e}")));
            return false;
        }
    };
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
                            let _ = started.send(Err(format!(
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
                let controller: Arc<dyn Controller> = Arc::new(queue);
                let server = ferrocable::server::Server::start(config.clone(), controller, metrics);
                let _ = started.send(Ok((port, Some(server.node.clone()))));
                server.serve(listener, stopped).await
            }
            Mode::Rpc => {
                let (host, port) = split_host_port(&config.rpc_host);
                let listener = match ferrocable::server::bind(&host, port, reuse_port).await {
                    Ok(l) => l,
                    Err(e) => {
                        let _ =
                            started.send(Err(format!("cannot listen on {}: {e}", config.rpc_host)));
                        return false;
                    }
                };
                let port = listener.local_addr().map(|a| a.port()).unwrap_or(port);
                let _ = started.send(Ok((port, None)));
                ferrocable::rpc_server::serve(listener, queue, stopped)
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
