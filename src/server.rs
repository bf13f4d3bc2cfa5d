//! The HTTP side: one listener serving the WebSocket endpoint(s), `/health`,
//! Prometheus metrics and the HTTP broadcast endpoint (metrics and broadcasts
//! may have listeners of their own), plus graceful shutdown. With `ssl_cert`
//! and `ssl_key`, every listener speaks TLS (as anycable-go's do).
//!
//! [`Server::start`] wires a node to its controller and broadcast
//! subscribers; [`Server::serve`] takes the listener and a shutdown future as
//! values, so tests bind `127.0.0.1:0` and stop it when they like.

use crate::broadcast;
use crate::client_log::{client_log, compact};
use crate::config::{BroadcastAdapter, BroadcastListener, Config};
use crate::controller::{ConnectReply, Controller, Env, HttpResponse, Metered, StateMap, Status};
use crate::fastlane::{FastLane, jwt};
use crate::handshake;
use crate::metrics::Metrics;
use crate::node::Node;
use crate::origin::origin_allowed;
use crate::protocol;
use crate::session::{self, RequestInfo};
use crate::tls::{self, TlsError};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

/// The longest ping interval a client may ask for with `?pi=` (seconds):
/// larger values are ignored (they would overflow the timer's deadline).
const MAX_CLIENT_PING_INTERVAL: u64 = 24 * 3600;

type Body = Full<Bytes>;

pub struct Server {
    pub node: Arc<Node>,
    stop: CancellationToken,
    tls: Option<TlsAcceptor>,
    /// The broadcast subscribers, awaited at shutdown (redisx removes its
    /// consumer group as it stops).
    subscribers: TaskTracker,
}

/// How long shutdown waits for the subscribers to clean up.
const SUBSCRIBERS_STOP: Duration = Duration::from_secs(3);

impl Server {
    /// Loads the listeners' TLS certificate and key (`ssl_cert`, `ssl_key`)
    /// and checks the Redis TLS files (`redis_tls_*`), creates the node and
    /// starts the broadcast subscribers the config asks for. Must run inside
    /// a tokio runtime. Fails, naming the option and the file, when a
    /// certificate or key cannot be used.
    pub fn start(
        config: Arc<Config>,
        controller: Arc<dyn Controller>,
        metrics: Arc<Metrics>,
    ) -> Result<Server, TlsError> {
        let tls = tls::listener_acceptor(config.ssl_cert.as_deref(), config.ssl_key.as_deref())?;
        if config.has_adapter(BroadcastAdapter::Redis)
            || config.has_adapter(BroadcastAdapter::Redisx)
            || config.pubsub() == crate::config::PubsubAdapter::Redis
        {
            config.redis_target().certificates()?;
        }
        metrics.rpc_capacity.set(config.rpc_concurrency as i64);
        let controller = Arc::new(Metered::new(controller, metrics.clone()));
        let controller = Arc::new(FastLane::new(controller, &config));
        let node = Node::start(config.clone(), controller, metrics.clone());
        crate::presence::start_sweep(&node);
        let stop = CancellationToken::new();
        let statsd = config.statsd();
        if config.metrics_log || statsd.is_some() {
            // Checked against anycable-go 1.6 metrics/metrics.go: every
            // rotate interval the writers (the log, StatsD) get the snapshot.
            let stop = stop.clone();
            let interval = config.metrics_rotate_interval();
            let log = config.metrics_log.then(|| {
                config
                    .metrics_log_filter
                    .iter()
                    .map(|f| f.trim().to_owned())
                    .filter(|f| !f.is_empty())
                    .collect()
            });
            tokio::spawn(async move {
                tokio::select! {
                    _ = stop.cancelled() => {}
                    _ = metrics.write_every(interval, log, statsd) => {}
                }
            });
        }
        let subscribers = TaskTracker::new();
        if config.has_adapter(BroadcastAdapter::Redis) {
            let stop = stop.clone();
            subscribers.spawn(broadcast::redis::run(
                node.clone(),
                config.redis_target(),
                config.redis_channel.clone(),
                async move { stop.cancelled().await },
            ));
        }
        if config.has_adapter(BroadcastAdapter::Redisx) {
            let stop = stop.clone();
            subscribers.spawn(broadcast::redisx::run(
                node.clone(),
                broadcast::redisx::Options {
                    target: config.redis_target(),
                    stream: config.redisx_stream.clone(),
                    group: config.redisx_group.clone(),
                    block: Duration::from_millis(config.redisx_read_block_milliseconds),
                },
                async move { stop.cancelled().await },
            ));
        }
        if config.has_adapter(BroadcastAdapter::Nats) {
            let stop = stop.clone();
            subscribers.spawn(broadcast::nats::run(
                node.clone(),
                broadcast::nats::Options {
                    servers: config.nats_servers.clone(),
                    subject: config.nats_channel.clone(),
                    in_order: config.nats_dont_randomize_servers,
                },
                async move { stop.cancelled().await },
            ));
        }
        if let Some(transport) = config.pubsub_transport() {
            let stop = stop.clone();
            let node = node.clone();
            subscribers.spawn(async move {
                let to: Arc<dyn broadcast::Publish> = node.clone();
                broadcast::pubsub::run(to, &node.pubsub, transport, async move {
                    stop.cancelled().await
                })
                .await
            });
        }
        subscribers.close();
        Ok(Server {
            node,
            stop,
            tls,
            subscribers,
        })
    }

    /// Accepts connections until `shutdown` resolves, then shuts down
    /// gracefully within `shutdown_timeout`. Returns whether everything
    /// (sessions, Disconnect calls) finished in time.
    pub async fn serve(&self, listener: TcpListener, shutdown: impl Future<Output = ()>) -> bool {
        let config = self.node.config.clone();
        let http = Arc::new(Http {
            node: self.node.clone(),
            metrics_only: false,
            broadcast_only: false,
            http1: http1_builder(),
            tls: self.tls.clone(),
            broadcast_key: config.effective_broadcast_key(),
            headers: config
                .headers
                .iter()
                .map(|h| h.trim().to_ascii_lowercase())
                .filter(|h| !h.is_empty())
                .collect(),
            jwt_header: config
                .jwt_key()
                .map(|_| jwt::header_name(&config.jwt_param)),
        });
        let connections = CancellationToken::new();
        if config.metrics_port != 0 && !config.metrics_http.is_empty() {
            match bind(&config.metrics_host, config.metrics_port, false).await {
                Ok(listener) => {
                    let metrics_http = Arc::new(Http {
                        node: self.node.clone(),
                        metrics_only: true,
                        broadcast_only: false,
                        http1: http1_builder(),
                        tls: http.tls.clone(),
                        broadcast_key: None,
                        headers: Vec::new(),
                        jwt_header: None,
                    });
                    info!(host = %config.metrics_host, port = config.metrics_port, "metrics listening");
                    tokio::spawn(accept_loop(listener, metrics_http, connections.clone()));
                }
                Err(e) => {
                    warn!(port = config.metrics_port, error = %e, "cannot listen for metrics")
                }
            }
        }
        if let Some(BroadcastListener::Port(port)) = config.http_broadcast_listener() {
            serve_broadcasts(&http, port, connections.clone()).await;
        }
        // shutdown_delay: keep serving (new connections included) for that
        // long after the signal, so a load balancer stops routing here
        // before connections are refused (checked against anycable-go 1.6
        // cli/cli.go: a sleeper runs before the WebSocket server stops).
        let delay = config.shutdown_delay();
        let shutdown = async move {
            shutdown.await;
            if !delay.is_zero() {
                info!(
                    seconds = delay.as_secs(),
                    "shutdown_delay: serving on before shutting down"
                );
                tokio::time::sleep(delay).await;
            }
        };
        tokio::pin!(shutdown);
        if let Ok(addr) = listener.local_addr() {
            info!(%addr, paths = ?config.path, tls = self.tls.is_some(), "listening");
        }
        if config.ws_max_pending_size == 0 {
            warn!(
                "ws_max_pending_size is 0: data frames queued for a client have no byte limit (only ws_write_timeout applies)"
            );
        }
        loop {
            let (stream, peer) = tokio::select! {
                _ = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: back off, keep serving.
                        warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(accept_connection(
                http.clone(),
                stream,
                peer,
                connections.clone(),
            ));
        }
        drop(listener);
        info!("stopped accepting connections");
        connections.cancel();
        self.stop.cancel();
        let finished = tokio::time::timeout(config.shutdown_timeout(), self.node.shutdown())
            .await
            .is_ok();
        if !finished {
            let (sessions, disconnects) = self.node.outstanding();
            warn!(
                sessions,
                disconnects, "shutdown_timeout reached with work outstanding"
            );
        }
        if tokio::time::timeout(SUBSCRIBERS_STOP, self.subscribers.wait())
            .await
            .is_err()
        {
            warn!("broadcast subscribers did not stop in time");
        }
        finished
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

struct Http {
    node: Arc<Node>,
    /// The metrics listener (metrics_port): health and metrics only.
    metrics_only: bool,
    /// The broadcast listener (http_broadcast_port): broadcasts only.
    broadcast_only: bool,
    /// How connections are served: made once, not per connection.
    http1: hyper::server::conn::http1::Builder,
    /// The listeners' TLS (`ssl_cert`), if they speak it.
    tls: Option<TlsAcceptor>,
    broadcast_key: Option<String>,
    headers: Vec<String>,
    /// The header a JWT travels in (`x-jid`), when JWT identification is on.
    jwt_header: Option<String>,
}

/// Serves HTTP broadcasts on a listener of their own (`http_broadcast_port`),
/// on `host`: always so without a key, so the public port never takes an
/// unauthenticated broadcast. A port that cannot be bound (a second Puma
/// worker on the same machine) is logged and the server carries on.
async fn serve_broadcasts(public: &Http, port: u16, stop: CancellationToken) {
    let config = &public.node.config;
    match bind(&config.host, port, false).await {
        Ok(listener) => {
            let http = Arc::new(Http {
                node: public.node.clone(),
                metrics_only: false,
                broadcast_only: true,
                http1: http1_builder(),
                tls: public.tls.clone(),
                broadcast_key: public.broadcast_key.clone(),
                headers: Vec::new(),
                jwt_header: None,
            });
            let keyed = http.broadcast_key.is_some();
            info!(host = %config.host, port, path = %config.http_broadcast_path, keyed, "HTTP broadcasts listening");
            if !keyed && !is_loopback(&config.host) {
                warn!(
                    host = %config.host,
                    port,
                    "HTTP broadcasts without a key on a non-loopback address: keep this port private or set broadcast_key (or secret)"
                );
            }
            tokio::spawn(accept_loop(listener, http, stop));
        }
        Err(e) => {
            warn!(port, error = %e, "cannot listen for HTTP broadcasts; they are not served by this process")
        }
    }
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Serves a secondary listener (metrics, broadcasts) until `stop`.
async fn accept_loop(listener: TcpListener, http: Arc<Http>, stop: CancellationToken) {
    loop {
        let accepted = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, peer)) => {
                tokio::spawn(accept_connection(http.clone(), stream, peer, stop.clone()));
            }
            Err(e) => {
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// How long a client may take over its TLS handshake (as long as it may take
/// over its request headers).
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves one accepted connection, after the TLS handshake if the listeners
/// speak TLS. A failed handshake (a plaintext client, a bad certificate on
/// the client's side) ends that connection only.
async fn accept_connection(
    http: Arc<Http>,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    stop: CancellationToken,
) {
    let Some(acceptor) = http.tls.clone() else {
        let socket = Socket::of(&stream);
        return serve_connection(http, stream, peer, socket, stop).await;
    };
    let handshake = tokio::select! {
        _ = stop.cancelled() => return,
        done = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)) => done,
    };
    match handshake {
        Ok(Ok(stream)) => serve_connection(http, stream, peer, Socket::NONE, stop).await,
        Ok(Err(e)) => client_log!(DEBUG, error = %e, "TLS handshake failed"),
        Err(_) => client_log!(DEBUG, "TLS handshake timed out"),
    }
}

/// The HTTP/1 settings of every connection: a client has 10 seconds to send
/// its request's head.
fn http1_builder() -> hyper::server::conn::http1::Builder {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10));
    builder
}

async fn serve_connection<S>(
    http: Arc<Http>,
    stream: S,
    peer: SocketAddr,
    socket: Socket,
    stop: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service_http = http.clone();
    let service = hyper::service::service_fn(move |req| {
        let http = service_http.clone();
        async move { Ok::<_, Infallible>(http.route(req, peer, socket).await) }
    });
    let conn = http
        .http1
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        result = conn.as_mut() => {
            if let Err(e) = result {
                debug!(error = %e, "HTTP connection error");
            }
        }
        _ = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(Duration::from_secs(5), conn).await;
        }
    }
}

fn respond(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
}

impl Http {
    async fn route(
        &self,
        req: Request<Incoming>,
        peer: SocketAddr,
        socket: Socket,
    ) -> Response<Body> {
        let config = &self.node.config;
        let path = req.uri().path();
        if self.broadcast_only {
            return match path {
                p if p == config.http_broadcast_path => self.broadcast(req).await,
                _ => respond(StatusCode::NOT_FOUND, "Not Found"),
            };
        }
        if self.metrics_only {
            return match path {
                p if p == config.health_path => respond(StatusCode::OK, "OK"),
                p if p == config.metrics_http => self.metrics(),
                _ => respond(StatusCode::NOT_FOUND, "Not Found"),
            };
        }
        if config.path.iter().any(|p| p == path) {
            return self.upgrade(req, peer, socket).await;
        }
        if path == config.health_path {
            return respond(StatusCode::OK, "OK");
        }
        // With a metrics port of their own, metrics are not on the public port.
        if !config.metrics_http.is_empty()
            && config.metrics_port == 0
            && path == config.metrics_http
        {
            return self.metrics();
        }
        if config.http_broadcast_listener() == Some(BroadcastListener::Main)
            && path == config.http_broadcast_path
        {
            return self.broadcast(req).await;
        }
        respond(StatusCode::NOT_FOUND, "Not Found")
    }

    fn metrics(&self) -> Response<Body> {
        let mut response = respond(StatusCode::OK, self.node.metrics.render());
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        );
        response
    }

    async fn broadcast(&self, req: Request<Incoming>) -> Response<Body> {
        let key = self.broadcast_key.as_deref();
        let (status, body) = broadcast::http::handle(req, key, &*self.node).await;
        respond(status, body)
    }

    /// Answers a WebSocket handshake. A stateful application (the embedded
    /// gem) is asked to connect first, with the whole request, so its Rack
    /// middleware and Rails' origin check can refuse the handshake as they
    /// do under Action Cable; a stateless one is asked after the upgrade.
    ///
    /// When the session's first frame follows at once (the application has
    /// answered already, or the fast lane will: a JWT), the answer is held
    /// back on a plain TCP socket until that frame joins it ([`Socket`]):
    /// one packet for both, not two, each side woken once.
    async fn upgrade(
        &self,
        mut req: Request<Incoming>,
        peer: SocketAddr,
        socket: Socket,
    ) -> Response<Body> {
        let metrics = &self.node.metrics;
        let key = match handshake::validate(&req) {
            Ok(key) => key,
            Err(refusal) => {
                metrics.rejected_handshakes.inc();
                return refusal.response();
            }
        };
        let headers = req.headers();
        if !origin_allowed(
            &self.node.config.allowed_origins,
            headers.get(header::ORIGIN),
        ) {
            metrics.rejected_handshakes.inc();
            let origin = headers
                .get(header::ORIGIN)
                .map(|o| String::from_utf8_lossy(o.as_bytes()));
            client_log!(WARN, origin = ?origin.map(compact), "handshake refused: origin not allowed");
            return respond(StatusCode::FORBIDDEN, "origin not allowed");
        }
        if self.node.is_shutting_down() {
            metrics.rejected_handshakes.inc();
            return respond(StatusCode::SERVICE_UNAVAILABLE, "shutting down");
        }
        let max_conn = self.node.config.max_conn;
        if max_conn > 0 && self.node.open_sessions() >= max_conn {
            metrics.rejected_handshakes.inc();
            client_log!(WARN, max_conn, "handshake refused: max_conn reached");
            return respond(StatusCode::SERVICE_UNAVAILABLE, "too many connections");
        }
        let subprotocol = protocol::select_subprotocol(
            headers
                .get_all(header::SEC_WEBSOCKET_PROTOCOL)
                .iter()
                .filter_map(|v| v.to_str().ok()),
        );
        let mut info = RequestInfo {
            url: request_url(&req, &self.node.config, self.tls.is_some()),
            headers: self.env_headers(headers, peer),
            extended: subprotocol == Some(protocol::PROTOCOL_V1_EXT_JSON),
            restore_sid: (subprotocol == Some(protocol::PROTOCOL_V1_EXT_JSON))
                .then(|| restore_sid(&req))
                .flatten(),
            ping_interval: query_param(&req, "pi").and_then(|v| match v.parse::<u64>() {
                Ok(seconds) if seconds <= MAX_CLIENT_PING_INTERVAL => Some(seconds),
                _ => {
                    client_log!(WARN, value = %compact(v.as_str()), "invalid ping interval (pi): must be an integer of seconds up to a day; ignored");
                    None
                }
            }),
            ping_precision: query_param(&req, "ptp")
                .map(|v| protocol::TimestampPrecision::from_param(&v)),
        };
        // The JWT, wherever the client put it, goes in the `X-JID` header
        // the fast lane (and the application) read, as anycable-go's
        // headers extractor does: the header wins over the subprotocol.
        if let Some(name) = &self.jwt_header {
            let token = headers
                .get(name.as_str())
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
                .or_else(|| {
                    jwt::token_from_subprotocols(
                        headers
                            .get_all(header::SEC_WEBSOCKET_PROTOCOL)
                            .iter()
                            .filter_map(|v| v.to_str().ok()),
                    )
                });
            if let Some(token) = token {
                info.headers.insert(name.clone(), token);
            }
        }
        let stateful = self.node.controller.stateful();
        let whole_request = stateful.then(|| {
            let mut all = all_headers(headers, peer);
            if let Some(name) = &self.jwt_header
                && let Some(token) = info.headers.get(name)
            {
                all.insert(name.clone(), token.clone());
            }
            all
        });

        let token_in_query =
            self.jwt_header.is_some() && query_param(&req, &self.node.config.jwt_param).is_some();
        let on_upgrade = hyper::upgrade::on(&mut req);
        drop(req);
        let node = self.node.clone();
        let reservation = node.reserve_session();
        // A stateful application's session restored from the broker is not
        // asked to connect (its connection object is rebuilt later).
        let restored = match whole_request {
            Some(_) => session::stored_session(&node, &info, reservation.sid()).await,
            None => None,
        };
        let connected = match whole_request.filter(|_| restored.is_none()) {
            Some(headers) => {
                let env = Env {
                    url: info.url.clone(),
                    headers,
                    ..Env::default()
                };
                let reply = node.controller.connect(reservation.sid(), env).await;
                if let Ok(ConnectReply {
                    handshake: Some(response),
                    ..
                }) = reply
                {
                    metrics.rejected_handshakes.inc();
                    debug!(
                        status = response.status,
                        "handshake refused by the application"
                    );
                    return http_response(response);
                }
                Some(reply)
            }
            None => None,
        };
        let answers_at_once = restored.is_none()
            && info.restore_sid.is_none()
            && match &connected {
                Some(_) => true,
                None => {
                    !stateful
                        && (token_in_query
                            || self
                                .jwt_header
                                .as_ref()
                                .is_some_and(|name| info.headers.contains_key(name)))
                }
            };
        let socket = if answers_at_once {
            socket.cork()
        } else {
            Socket::NONE
        };
        tokio::spawn(async move {
            match on_upgrade.await {
                Ok(upgraded) => {
                    let ws = reservation.meter(Uncork::new(TokioIo::new(upgraded), socket));
                    // A task of its own: this one's captures (the request,
                    // the connect reply) would otherwise stay in memory for
                    // the connection's whole life.
                    tokio::spawn(session::run(
                        node,
                        ws,
                        info,
                        reservation,
                        connected,
                        restored,
                    ));
                }
                Err(e) => {
                    debug!(error = %e, "upgrade failed");
                    // The application accepted a connection whose socket never
                    // came: it still gets its Disconnect.
                    if let Some(Ok(reply)) = connected
                        && reply.status == Status::Success
                    {
                        session::abandon(&node, reservation, reply.identifiers, info).await;
                    }
                }
            }
        });

        let mut response = respond(StatusCode::SWITCHING_PROTOCOLS, Bytes::new());
        let h = response.headers_mut();
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(
            header::SEC_WEBSOCKET_ACCEPT,
            HeaderValue::from_str(&derive_accept_key(key.as_bytes()))
                .expect("base64 is a valid header value"),
        );
        if let Some(p) = subprotocol {
            h.insert(header::SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_static(p));
        }
        response
    }

    /// The allow-listed request headers plus REMOTE_ADDR.
    fn env_headers(&self, headers: &HeaderMap, peer: SocketAddr) -> StateMap {
        request_headers(headers, peer, |name| self.headers.iter().any(|h| h == name))
    }
}

/// A plain TCP connection's socket, to hold the handshake's answer back
/// until the session's first frame joins it (Linux's `TCP_CORK`: the
/// kernel sends what it holds when the socket is uncorked, when it closes,
/// or after 200 ms at most). Nothing elsewhere, nor over TLS.
#[derive(Clone, Copy)]
struct Socket {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fd: Option<std::os::fd::RawFd>,
}

impl Socket {
    const NONE: Socket = Socket {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        fd: None,
    };

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    fn of(stream: &tokio::net::TcpStream) -> Socket {
        use std::os::fd::AsRawFd;
        Socket {
            fd: Some(stream.as_raw_fd()),
        }
    }

    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    fn of(_: &tokio::net::TcpStream) -> Socket {
        Socket::NONE
    }

    /// Holds back what is written from now on; the socket to uncork, if
    /// it could be corked.
    fn cork(self) -> Socket {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        if let Some(fd) = self.fd
            && set_cork(fd, true)
        {
            return self;
        }
        Socket::NONE
    }

    /// Sends what was held back (once: the socket forgets its descriptor).
    fn uncork(&mut self) {
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        if let Some(fd) = self.fd.take() {
            set_cork(fd, false);
        }
    }
}

/// `TCP_CORK` on or off; whether the kernel took it.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set_cork(fd: std::os::fd::RawFd, on: bool) -> bool {
    let value: libc::c_int = on.into();
    // SAFETY: `fd` is the connection's socket, open while the connection
    // (whose task calls this) is; the option value is a c_int, as TCP_CORK
    // takes.
    unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_CORK,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        ) == 0
    }
}

/// An upgraded connection that uncorks its socket ([`Socket`]) once the
/// session's first write has joined the handshake's answer (or at its
/// first flush or shutdown).
struct Uncork<S> {
    io: S,
    socket: Socket,
}

impl<S> Uncork<S> {
    fn new(io: S, socket: Socket) -> Self {
        Uncork { io, socket }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Uncork<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Uncork<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let written = std::pin::Pin::new(&mut self.io).poll_write(cx, buf);
        if written.is_ready() {
            self.socket.uncork();
        }
        written
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let written = std::pin::Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        if written.is_ready() {
            self.socket.uncork();
        }
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.socket.uncork();
        std::pin::Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.socket.uncork();
        std::pin::Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// The previous session a client asks to restore: the
/// `X-ANYCABLE-RESTORE-SID` header, else the `sid` query parameter (as
/// @anycable/core sends it).
fn restore_sid(req: &Request<Incoming>) -> Option<String> {
    let from_header = req
        .headers()
        .get("x-anycable-restore-sid")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let from_query = || query_param(req, "sid");
    from_header.or_else(from_query).filter(|s| !s.is_empty())
}

/// A query parameter of the request, undecoded (session ids, `pi` and
/// `ptp` values are plain alphanumerics), if present and not empty.
fn query_param(req: &Request<Incoming>, name: &str) -> Option<String> {
    req.uri()
        .query()?
        .split('&')
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

/// Every request header for a stateful application's `connect`.
fn all_headers(headers: &HeaderMap, peer: SocketAddr) -> StateMap {
    request_headers(headers, peer, |_| true)
}

/// The request headers `wanted` picks (lower-case names), repeated ones
/// joined as Rack servers join them, plus `REMOTE_ADDR`. Bytes outside
/// visible ASCII (a cookie value like `José`) are passed on, lossily, as
/// Rack does: dropping the header lost the session.
fn request_headers(
    headers: &HeaderMap,
    peer: SocketAddr,
    wanted: impl Fn(&str) -> bool,
) -> StateMap {
    let mut env = StateMap::new();
    // A name with an underscore would reach Rack as the same key as its
    // dashed twin (`X_Forwarded_For` and `X-Forwarded-For` are both
    // HTTP_X_FORWARDED_FOR), letting a client override what a proxy set:
    // such headers are dropped, as nginx does by default.
    let names = headers
        .keys()
        .filter(|name| !name.as_str().contains('_') && wanted(name.as_str()));
    for name in names {
        let sep = if name == header::COOKIE { "; " } else { ", " };
        let value = headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()))
            .collect::<Vec<_>>()
            .join(sep);
        env.insert(name.as_str().to_owned(), value);
    }
    env.insert("REMOTE_ADDR".into(), peer.ip().to_string());
    env
}

/// The application's own answer to a handshake it refused.
fn http_response(answer: HttpResponse) -> Response<Body> {
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = respond(status, answer.body);
    for (name, value) in answer.headers {
        // Rack joins repeated headers with newlines.
        for value in value.split('\n') {
            if let (Ok(name), Ok(value)) = (
                header::HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                response.headers_mut().append(name, value);
            }
        }
    }
    response
}

/// Binds a listener on `host:port`: the first IPv4 address the host
/// resolves to (so `localhost` is 127.0.0.1, as clients expect), else the
/// first address. With `reuse_port`, several processes may share the port
/// (Puma cluster workers), the kernel spreading connections among them.
pub async fn bind(host: &str, port: u16, reuse_port: bool) -> std::io::Result<TcpListener> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, port)).await?.collect();
    let addr = addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::AddrNotAvailable,
                format!("{host} resolves to no address"),
            )
        })?;
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    if reuse_port {
        socket.set_reuseport(true)?;
    }
    socket.bind(addr)?;
    socket.listen(4096)
}

/// The absolute URL of the request, as the application sees it (https over
/// our own TLS, or behind a proxy that says so).
fn request_url(req: &Request<Incoming>, config: &Config, tls: bool) -> String {
    let scheme = match req
        .headers()
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
    {
        Some(p) if p.eq_ignore_ascii_case("https") => "https",
        _ if tls => "https",
        _ => "http",
    };
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .unwrap_or_else(|| format!("{}:{}", config.host, config.port));
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    format!("{scheme}://{host}{path}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn underscore_headers_cannot_shadow_dashed_ones() {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", HeaderValue::from_static("203.0.113.7"));
        headers.insert("x_forwarded_for", HeaderValue::from_static("6.6.6.6"));
        headers.append("cookie", HeaderValue::from_static("a=1"));
        headers.append(
            "cookie",
            HeaderValue::from_bytes(b"pref=Jos\xc3\xa9").unwrap(),
        );
        let env = all_headers(&headers, "127.0.0.1:1".parse().unwrap());
        assert_eq!(
            env.get("x-forwarded-for").map(String::as_str),
            Some("203.0.113.7")
        );
        assert!(!env.contains_key("x_forwarded_for"));
        assert_eq!(
            env.get("cookie").map(String::as_str),
            Some("a=1; pref=José")
        );
        assert_eq!(
            env.get("REMOTE_ADDR").map(String::as_str),
            Some("127.0.0.1")
        );
    }
}
