//! Configuration: one type for every mode, with anycable-go's names.
//!
//! Each option is a flag (`--rpc_host`, `-rpc_host`, `--rpc-host`), an
//! environment variable (`ANYCABLE_RPC_HOST`), or a key in a TOML file
//! (anycable-go's `[rpc] host = "..."` or the flat `rpc_host = "..."`; file
//! given by `--config-path` / `ANYCABLE_CONFIG_PATH`, else `./anycable.toml`
//! for the binary). Precedence: flag, then environment, then file, then the
//! default. `PORT` and `REDIS_URL` are honoured when the `ANYCABLE_`
//! variable is not set, as anycable-go does. The anycable-go options we do
//! not implement live in [`anycable`]; the file format in `file`; the README
//! table in `reference`.

pub mod anycable;
pub mod file;
mod presets;
mod reference;

pub use reference::markdown_reference;

use crate::broadcast::redis::RedisTarget;
pub use crate::protocol::TimestampPrecision;
use crate::tls::ClientTls;
use clap::{ArgAction, CommandFactory, FromArgMatches, Parser, ValueEnum};
use serde::Serialize;
use std::collections::BTreeMap;
use std::collections::HashMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DisconnectMode {
    /// Call Disconnect for a session the application took part in (its connect or one of its subscriptions); not for a JWT-identified session with only fast-lane subscriptions.
    Auto,
    /// Call Disconnect for every session that connected successfully.
    Always,
    /// Never call Disconnect.
    Never,
}

/// Where stream positions, history and stored sessions live (`broker`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BrokerAdapter {
    /// In this process (one node; lost on restart).
    Memory,
    /// In Redis at `redis_url` (a cluster shares it; survives restarts).
    Redis,
    /// None: no positions, no history, no session restore.
    None,
}

/// How nodes tell each other about whispers and presence (`pubsub`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PubsubAdapter {
    /// Redis pub/sub at `redis_url`.
    Redis,
    /// NATS at `nats_servers`.
    Nats,
    /// None: this node's subscribers only.
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BroadcastAdapter {
    /// Redis pub/sub on `redis_channel`.
    Redis,
    /// HTTP POST to `http_broadcast_path`.
    Http,
    /// Redis Streams: entries of `redisx_stream`, read by every node in a
    /// consumer group of its own.
    Redisx,
    /// NATS: messages on the subject `nats_channel`.
    Nats,
}

/// How the binary calls the application.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RpcTransport {
    /// `anycable.RPC` over gRPC (HTTP/2).
    Grpc,
    /// HTTP RPC: JSON over HTTP/1.1 POSTs.
    Http,
}

/// Where the HTTP broadcast endpoint is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BroadcastListener {
    /// On the WebSocket listener (a key is required).
    Main,
    /// On a listener of its own, on `host`.
    Port(u16),
}

/// anycable-go's port for an HTTP broadcast endpoint without a key.
pub const KEYLESS_BROADCAST_PORT: u16 = 8090;
/// `redis_url`'s default: Redis is "configured" when it is anything else.
pub const DEFAULT_REDIS_URL: &str = "redis://localhost:6379";

/// A boolean option as Go programs take it: `--debug`, `--debug=true`,
/// `--debug=false`, `ANYCABLE_DEBUG=true`.
macro_rules! go_bool {
    () => {
        clap::builder::BoolishValueParser::new()
    };
}

/// `disconnect_backlog_size`'s default: anycable-go's is 4096, where a full
/// queue blocks the closing session; here a full queue drops the call (see
/// `disconnect_queue`), so the default holds a burst of 65,536 sockets
/// closing at once (a load balancer restarting, a network partition healing)
/// without losing a call. A queued call holds only its request (the
/// channel's blocks are allocated as it fills), not the session.
pub const DEFAULT_DISCONNECT_BACKLOG: usize = 65_536;

/// Every option is a flag named as anycable-go names it (the field name,
/// snake_case, unless spelled otherwise below) and an `ANYCABLE_` variable
/// derived from that name in [`Config::cli`].
#[derive(Debug, Clone, PartialEq, Eq, Parser, Serialize)]
#[command(
    name = "ferrocable",
    version,
    rename_all = "snake_case",
    about = "Ferrocable: an Action Cable server with a Rust core, a drop-in replacement for anycable-go",
    long_about = "Ferrocable serves Action Cable clients (@rails/actioncable, @anycable/web) over WebSocket and \
                  calls your application through the AnyCable RPC contract (gRPC). Broadcasts arrive over Redis (pub/sub or a stream), NATS \
                  or HTTP. Every option is also an ANYCABLE_* environment variable and a key in \
                  anycable.toml (read from the working directory, or the file given by --config-path). \
                  anycable-go options not implemented yet are accepted with a warning.",
    max_term_width = 100
)]
pub struct Config {
    /// TOML file with options: anycable-go's format (sections) or flat (the flag names); default ./anycable.toml, then /etc/anycable/anycable.toml, when present
    #[arg(long = "config-path", value_name = "FILE")]
    pub config_path: Option<PathBuf>,

    /// Read no configuration file
    #[arg(long = "ignore-config-path", action = ArgAction::Set, num_args = 0..=1, default_value = "false", default_missing_value = "true", value_parser = go_bool!())]
    pub ignore_config_path: bool,

    /// Print the configuration (as a flat TOML file) and exit
    #[arg(long = "print-config", action = ArgAction::Set, num_args = 0..=1, default_value = "false", default_missing_value = "true", value_parser = go_bool!())]
    #[serde(skip)]
    pub print_config: bool,

    /// anycable-go's presets, comma separated: fly, heroku, broker ("none": none); unset: fly or heroku when their platform's variables are present. A preset fills in only options left unset
    #[arg(long)]
    pub presets: Option<String>,

    /// Address to listen on
    #[arg(long, default_value = "localhost")]
    pub host: String,

    /// Port to listen on (also PORT)
    #[arg(long, default_value_t = 8080)]
    pub port: u16,

    /// WebSocket endpoint path(s), comma separated
    #[arg(long, default_value = "/cable", value_delimiter = ',')]
    pub path: Vec<String>,

    /// Health check endpoint path
    #[arg(
        long = "health-path",
        visible_alias = "health_path",
        default_value = "/health"
    )]
    pub health_path: String,

    /// Hosts whose pages may connect (the Origin header), comma separated, port included as in anycable-go: example.com, localhost:3000, *.example.com (subdomains, not example.com itself); when set, a handshake without Origin is refused; empty allows all
    #[arg(long, value_delimiter = ',')]
    pub allowed_origins: Vec<String>,

    /// Most WebSocket connections served at once (0: no limit); more are refused with 503
    #[arg(long = "max-conn", visible_alias = "max_conn", default_value_t = 0)]
    pub max_conn: usize,

    /// Seconds to wait for clients to be disconnected and Disconnect calls to finish on shutdown
    #[arg(long, default_value_t = 30)]
    pub shutdown_timeout: u64,

    /// Seconds to keep serving after SIGTERM/SIGINT before the shutdown starts (so a load balancer stops routing here first), as anycable-go's
    #[arg(long, default_value_t = 0)]
    pub shutdown_delay: u64,

    /// TLS certificate (PEM, the chain) for every listener: WebSocket, health, metrics and HTTP broadcasts (with ssl_key)
    #[arg(long, value_name = "FILE")]
    pub ssl_cert: Option<String>,

    /// TLS private key (PEM) for ssl_cert
    #[arg(long, value_name = "FILE")]
    pub ssl_key: Option<String>,

    /// RPC server address: host:port for gRPC, or an http(s):// URL for HTTP RPC (e.g. http://app:3000/_anycable)
    #[arg(long, default_value = "localhost:50051")]
    pub rpc_host: String,

    /// RPC transport, `grpc` or `http`; empty: http for an http(s):// rpc_host, else grpc (anycable-go's inference)
    #[arg(long, default_value = "")]
    pub rpc_impl: String,

    /// HTTP RPC: the token sent as `Authorization: Bearer <token>`; default: derived from secret ("none": no token)
    #[arg(long, hide_env_values = true)]
    pub http_rpc_secret: Option<String>,

    /// Maximum number of concurrent RPC calls
    #[arg(long, default_value_t = 28)]
    pub rpc_concurrency: usize,

    /// Time limit of one request to the RPC server, in milliseconds (0: none for gRPC; HTTP RPC then uses 3000); a call is also bounded by rpc_command_timeout
    #[arg(long, default_value_t = 0)]
    pub rpc_request_timeout: u64,

    /// Time limit of one RPC call, retries included, in milliseconds (0: none)
    #[arg(long, default_value_t = 3000)]
    pub rpc_command_timeout: u64,

    /// HTTP RPC: time limit for one call in milliseconds, instead of rpc_request_timeout (deprecated by anycable-go; 0: rpc_request_timeout)
    #[arg(long, hide = true, default_value_t = 0)]
    pub http_rpc_timeout: u64,

    /// Call the RPC server over TLS (also on when rpc_tls_root_ca is set)
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, default_value = "false", default_missing_value = "true", value_parser = go_bool!())]
    pub rpc_enable_tls: bool,

    /// Check the RPC server's TLS certificate (false is insecure: for tests and development only)
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, default_value = "true", default_missing_value = "true", value_parser = go_bool!())]
    pub rpc_tls_verify: bool,

    /// CA certificate the RPC server's certificate is checked with, a PEM file path or the PEM itself (default: the system's CAs)
    #[arg(long, value_name = "PEM")]
    pub rpc_tls_root_ca: Option<String>,

    /// Request headers passed to the application, comma separated
    #[arg(long, default_value = "cookie", value_delimiter = ',')]
    pub headers: Vec<String>,

    /// Embedded: an application call still running after this many milliseconds is logged and counted (ferrocable_slow_calls); it is never cut short
    #[arg(long, default_value_t = 5000)]
    pub slow_call_threshold: u64,

    /// Broadcast transports to listen on, comma separated; the default is anycable-go 1.5+'s
    #[arg(long, default_value = "http,redis", value_delimiter = ',')]
    pub broadcast_adapter: Vec<BroadcastAdapter>,

    /// Redis URL for broadcasts, pub/sub (redis) and streams (redisx) (also REDIS_URL)
    #[arg(long, default_value = DEFAULT_REDIS_URL)]
    pub redis_url: String,

    /// Redis channel for broadcasts
    #[arg(long, default_value = "__anycable__")]
    pub redis_channel: String,

    /// Check the Redis server's TLS certificate (rediss:// URLs); off by default, as in anycable-go (a warning says so)
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, default_value = "false", default_missing_value = "true", value_parser = go_bool!())]
    pub redis_tls_verify: bool,

    /// CA certificate (PEM file) the Redis server's certificate is checked with (default: the system's CAs)
    #[arg(long, value_name = "FILE")]
    pub redis_tls_ca_cert_path: Option<String>,

    /// Client certificate (PEM file) for mutual TLS with Redis (with redis_tls_client_key_path)
    #[arg(long, value_name = "FILE")]
    pub redis_tls_client_cert_path: Option<String>,

    /// Client private key (PEM file) for redis_tls_client_cert_path
    #[arg(long, value_name = "FILE")]
    pub redis_tls_client_key_path: Option<String>,

    /// Redis stream for broadcasts (redisx); each node reads it in a consumer group of its own, named redisx_group and a random suffix
    #[arg(long, default_value = "__anycable__")]
    pub redisx_stream: String,

    /// Prefix of the nodes' consumer group names (redisx)
    #[arg(long, default_value = "bx")]
    pub redisx_group: String,

    /// How long one read of the Redis stream waits for entries, in milliseconds (redisx)
    #[arg(long, default_value_t = 2000)]
    pub redisx_read_block_milliseconds: u64,

    /// NATS server URLs for broadcasts, comma separated
    #[arg(long, default_value = "nats://127.0.0.1:4222")]
    pub nats_servers: String,

    /// NATS subject for broadcasts
    #[arg(long, default_value = "__anycable__")]
    pub nats_channel: String,

    /// Connect to the NATS servers in the order given instead of a random one
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, default_value = "false", default_missing_value = "true", value_parser = go_bool!())]
    pub nats_dont_randomize_servers: bool,

    /// HTTP broadcast endpoint path
    #[arg(long, default_value = "/_broadcast")]
    pub http_broadcast_path: String,

    /// Port of the HTTP broadcast endpoint; 0: the main port when a key is set (broadcast_key or secret), else 8090 (on `host`), as anycable-go: a keyless endpoint never shares the WebSocket port
    #[arg(long, default_value_t = 0)]
    pub http_broadcast_port: u16,

    /// Key required as `Authorization: Bearer <key>` by the HTTP broadcast endpoint ("none": no key)
    #[arg(long, hide_env_values = true)]
    pub broadcast_key: Option<String>,

    /// The 1.0–1.4 name of broadcast_key (deprecated by anycable-go; it wins over broadcast_key, as there)
    #[arg(long, hide = true, hide_env_values = true)]
    pub http_broadcast_secret: Option<String>,

    /// Application secret; derives the broadcast key when broadcast_key is not set, and is the default jwt_secret and streams_secret ("none": no secret)
    #[arg(long, hide_env_values = true)]
    pub secret: Option<String>,

    /// Stream positions, history and resumable sessions (extended protocol): memory (this process), redis (shared by a cluster, survives restarts) or none; default: redis when redis_url is set or redisx is a broadcast adapter and no adapter fans out to every node (redis pub/sub, nats), else memory
    #[arg(long, value_enum)]
    pub broker: Option<BrokerAdapter>,

    /// Pub/sub between nodes (channel __anycable_internal__), for whispers, presence events and the broadcasts and remote disconnects that reach one node only (HTTP, the gem's in-process broadcasts), passed on at their position: redis, nats or none; default: redis when broker=redis or a Redis broadcast adapter is used, else nats when nats is a broadcast adapter, else none
    #[arg(long, value_enum)]
    pub pubsub: Option<PubsubAdapter>,

    /// Messages kept per stream for history (broker)
    #[arg(long, default_value_t = 100)]
    pub history_limit: usize,

    /// Seconds a message is kept for history (broker)
    #[arg(long, default_value_t = 300)]
    pub history_ttl: u64,

    /// Seconds a closed session is kept for restore (broker; 0: sessions are not restored)
    #[arg(long, default_value_t = 300)]
    pub sessions_ttl: u64,

    /// Seconds a closed session's presence records are kept (broker): a client back within it causes no leave
    #[arg(long, default_value_t = 15)]
    pub presence_ttl: u64,

    /// The key JWT tokens are verified with (HMAC: HS256, HS384, HS512); default: secret ("none": no JWT identification)
    #[arg(long, hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// The query parameter carrying a token (`?jid=`); the header is `X-` and this name (`X-JID`)
    #[arg(long, default_value = "jid")]
    pub jwt_param: String,

    /// Refuse connections without a token (unauthorized) instead of asking the application
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, default_value = "false", default_missing_value = "true", value_parser = go_bool!())]
    pub enforce_jwt: bool,

    /// The 1.0–1.4 name of jwt_secret (deprecated by anycable-go)
    #[arg(long, hide = true, hide_env_values = true)]
    pub jwt_id_key: Option<String>,

    /// The 1.0–1.4 name of jwt_param (deprecated by anycable-go)
    #[arg(long, hide = true)]
    pub jwt_id_param: Option<String>,

    /// The 1.0–1.4 name of enforce_jwt (deprecated by anycable-go)
    #[arg(long, hide = true, action = ArgAction::Set, num_args = 0..=1, default_value = "false", default_missing_value = "true", value_parser = go_bool!())]
    pub jwt_id_enforce: bool,

    /// The key signed stream names (`$pubsub` channel, `signed_stream_name`) are verified with; default: secret ("none": no signed streams)
    #[arg(long, hide_env_values = true)]
    pub streams_secret: Option<String>,

    /// Allow unsigned streams: `$pubsub` subscriptions with `stream_name`
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, default_value = "false", default_missing_value = "true", value_parser = go_bool!())]
    pub public_streams: bool,

    /// Let subscribers of signed streams whisper to each other (public streams always may)
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, default_value = "false", default_missing_value = "true", value_parser = go_bool!())]
    pub streams_whisper: bool,

    /// Give subscribers of signed streams presence on their stream (join, leave, presence; public streams always have it)
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, default_value = "true", default_missing_value = "true", value_parser = go_bool!())]
    pub streams_presence: bool,

    /// Serve `Turbo::StreamsChannel` subscriptions in the server (signed names verified with turbo_streams_secret), without calling the application
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, default_value = "false", default_missing_value = "true", value_parser = go_bool!())]
    pub turbo_streams: bool,

    /// The key Turbo stream names are verified with (turbo-rails' verifier key); default: streams_secret, else secret
    #[arg(long, hide_env_values = true)]
    pub turbo_streams_secret: Option<String>,

    /// turbo-rails' own verifier key, binary, as hex: the gem sets it from `Turbo.signed_stream_verifier_key` when turbo_streams is on and no secret is given
    #[arg(long, hide = true, hide_env_values = true)]
    pub turbo_streams_key_hex: Option<String>,

    /// The 1.0–1.4 name of turbo_streams_secret; setting it turns turbo_streams on (deprecated by anycable-go)
    #[arg(long, hide = true, hide_env_values = true)]
    pub turbo_rails_key: Option<String>,

    /// Seconds between server pings
    #[arg(long, default_value_t = 3)]
    pub ping_interval: u64,

    /// Precision of the timestamps in pings: s, ms or ns (a client may ask for its own with ?ptp=)
    #[arg(long, value_enum, default_value = "s")]
    pub ping_timestamp_precision: TimestampPrecision,

    /// Seconds an extended-protocol client may stay silent after a ping before it is disconnected (no_pong); 0: pongs are not required
    #[arg(long, default_value_t = 0)]
    pub pong_timeout: u64,

    /// Maximum size of a client message in bytes (larger closes with 1009)
    #[arg(long, default_value_t = 65536)]
    pub max_message_size: usize,

    /// Bytes waiting for one client (queued frames and unsent control replies) before it is disconnected as too_slow; 0: no limit for data frames (control replies keep 1 MiB)
    #[arg(long, default_value_t = 1048576)]
    pub ws_max_pending_size: usize,

    /// Seconds a write to a client may take; a client whose socket takes nothing for that long is disconnected (too_slow), as in anycable-go
    #[arg(long, default_value_t = 2)]
    pub ws_write_timeout: u64,

    /// Bytes read from a socket at a time (into a buffer per thread: a connection keeps none between messages)
    #[arg(long, default_value_t = 1024)]
    pub read_buffer_size: usize,

    /// Bytes of outgoing frames batched before a write is forced
    #[arg(long, default_value_t = 1024)]
    pub write_buffer_size: usize,

    /// Most subscriptions on one connection; more are rejected
    #[arg(long, default_value_t = 1000)]
    pub max_subscriptions: usize,

    /// Bytes of state one connection may hold (subscription identifiers, their streams and state, connection state); a subscribe over it is rejected, a reply growing the state past it disconnects (invalid_request)
    #[arg(long, default_value_t = 524288)]
    pub max_session_state_size: usize,

    /// When to call Disconnect for closed sessions
    #[arg(long, value_enum, default_value = "auto")]
    pub disconnect_mode: DisconnectMode,

    /// Disconnect calls started per second at most, as in anycable-go (0: no limit); they also use at most a quarter of rpc_concurrency, and neither limit applies during shutdown
    #[arg(long, default_value_t = 100)]
    pub disconnect_rate: u32,

    /// Disconnect calls that may wait in the queue; when it is full a closing session's call is dropped and counted (ferrocable_disconnect_dropped_total), except for the gem's application and during shutdown, where the session waits for room
    #[arg(
        long = "disconnect_backlog_size",
        alias = "disconnect_backlog",
        default_value_t = DEFAULT_DISCONNECT_BACKLOG
    )]
    pub disconnect_backlog: usize,

    /// Never call Disconnect (deprecated by anycable-go: disconnect_mode=never)
    #[arg(long, hide = true, action = ArgAction::Set, num_args = 0..=1, default_value = "false", default_missing_value = "true", value_parser = go_bool!())]
    pub disable_disconnect: bool,

    /// Path for Prometheus metrics (e.g. /metrics); empty disables them
    #[arg(long, default_value = "")]
    pub metrics_http: String,

    /// Serve metrics (and health) on this port instead of the main one; 0 keeps them on the main port
    #[arg(long, default_value_t = 0)]
    pub metrics_port: u16,

    /// Address of the metrics listener (with metrics_port)
    #[arg(long, default_value = "localhost")]
    pub metrics_host: String,

    /// Labels on every metric, `key:value` pairs, comma separated (e.g. `env:prod,region:eu`); in anycable.toml `[metrics] tags.env = "prod"`
    #[arg(long, default_value = "")]
    pub metrics_tags: String,

    /// Log the metrics (anycable-go's names) at info level every metrics_rotate_interval seconds
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, default_value = "false", default_missing_value = "true", value_parser = go_bool!())]
    pub metrics_log: bool,

    /// Seconds between metrics logs (metrics_log); a counter is logged as what it counted in the interval
    #[arg(long, default_value_t = 15)]
    pub metrics_rotate_interval: u64,

    /// The old name of metrics_rotate_interval (deprecated by anycable-go; used when metrics_rotate_interval is 0)
    #[arg(long, hide = true, default_value_t = 0)]
    pub metrics_log_interval: u64,

    /// Metrics to log (metrics_log), anycable-go's names, comma separated (e.g. clients_num,broadcast_msg_total); empty logs all
    #[arg(long, default_value = "", value_delimiter = ',')]
    pub metrics_log_filter: Vec<String>,

    /// StatsD server (host:port, UDP) to send the metrics to every metrics_rotate_interval seconds (anycable-go's names); empty: none
    #[arg(long, default_value = "")]
    pub statsd_host: String,

    /// Prefix of the StatsD metric names
    #[arg(long, default_value = "anycable_go.")]
    pub statsd_prefix: String,

    /// Largest StatsD UDP packet, bytes
    #[arg(long, default_value_t = 1400)]
    pub statsd_max_packet_size: usize,

    /// How StatsD tags (metrics_tags) are written: datadog, influxdb or graphite
    #[arg(long, default_value = "datadog")]
    pub statsd_tags_format: String,

    /// Log level
    #[arg(long, value_enum, default_value = "info")]
    pub log_level: LogLevel,

    /// Log format
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,

    /// Debug logging (log_level=debug)
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, default_value = "false", default_missing_value = "true", value_parser = go_bool!())]
    pub debug: bool,

    /// Warnings found while loading (options accepted but not implemented,
    /// deprecated names), logged once logging is set up.
    #[arg(skip)]
    pub warnings: Vec<String>,

    /// anycable-go options set that ferrocable does not implement (by name).
    #[arg(skip)]
    pub anycable: BTreeMap<String, String>,

    /// The presets applied (logged at start).
    #[arg(skip)]
    #[serde(skip)]
    pub presets_applied: Vec<String>,
}

/// A configuration problem found after parsing (bad combinations, bad files).
#[derive(Debug)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// Which configuration files [`Config::load_from`] looks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Files {
    /// Only a file named by `--config-path` / `ANYCABLE_CONFIG_PATH`.
    Named,
    /// Also `./anycable.toml`, then `/etc/anycable/anycable.toml`, as
    /// anycable-go 1.5+ does (the binary).
    Default,
}

/// `--help` groups: each starts at the option named (fields are in order).
const HEADINGS: [(&str, &str); 8] = [
    ("host", "Server"),
    ("rpc_host", "RPC"),
    ("broadcast_adapter", "Broadcasting"),
    ("jwt_secret", "Fast lane: JWT, signed and Turbo streams"),
    ("ping_interval", "WebSocket"),
    ("disconnect_mode", "Disconnect calls"),
    ("metrics_http", "Metrics"),
    ("log_level", "Logging"),
];

/// anycable-go's default file locations, in order.
pub const DEFAULT_FILES: [&str; 2] = ["./anycable.toml", "/etc/anycable/anycable.toml"];

/// Variables anycable-go (or an earlier ferrocable) reads besides the
/// `ANYCABLE_` one: (the option's variable, the other name, whether
/// anycable-go reads the other name). Both set differently: anycable-go
/// takes the `ANYCABLE_` one without a word (cli/options.go, urfave/cli's
/// `EnvVars` in order: `PORT` is the platform's, Heroku's), so we take it
/// too and warn; ferrocable's own old name is an error.
const ENV_ALIASES: [(&str, &str, bool); 3] = [
    ("ANYCABLE_PORT", "PORT", true),
    ("ANYCABLE_REDIS_URL", "REDIS_URL", true),
    (
        "ANYCABLE_DISCONNECT_BACKLOG_SIZE",
        "ANYCABLE_DISCONNECT_BACKLOG",
        false,
    ),
];

/// Options that choose or print the configuration: meaningless inside a
/// config file, so a file setting one is refused.
const NOT_IN_A_FILE: [&str; 5] = [
    "help",
    "version",
    "config-path",
    "ignore-config-path",
    "print-config",
];

/// String options anycable-go's TOML takes as arrays (besides the options
/// with a `,` delimiter): joined with `,` as their flag takes them.
const ARRAY_OPTIONS: [&str; 4] = [
    "presets",
    "metrics_log_filter",
    "allowed_origins",
    "nats_servers",
];

/// anycable-go's variable for a flag: `ANYCABLE_` and the name, upper case,
/// dashes as underscores (`health-path` → `ANYCABLE_HEALTH_PATH`).
pub fn env_name(long: &str) -> String {
    format!("ANYCABLE_{}", long.replace('-', "_").to_uppercase())
}

fn invalid(kind: clap::error::ErrorKind, message: impl std::fmt::Display) -> clap::Error {
    Config::cli().error(kind, message)
}

/// What a config file's values may be: checked against each option's type
/// before they become defaults, so nothing is taken silently (a table, an
/// array or a float where the option takes none; `1.0` used to become
/// `1`, `{ a = 1 }` the text `a:1`), and one option set twice differently
/// (under an alias, or the sectioned and the flat form) is refused.
/// anycable-go 1.6 decodes its TOML into typed fields (config/config.go
/// `LoadFromFile`, BurntSushi/toml `Decode`) and fails on a wrong type too
/// (it ignores unknown keys, which we refuse). Strings are taken for every
/// option here (as its flag or variable would be; anycable-go's decoding
/// refuses `port = "8080"`, the flat form is ours). Returns the (flag,
/// value) pairs to layer.
fn check_file(
    path: &std::path::Path,
    cli: &clap::Command,
    names: &HashMap<String, (String, String)>,
    values: &[file::FileValue],
) -> Result<Vec<(String, String)>, String> {
    use file::Kind;
    let file = path.display();
    let mut seen: HashMap<&str, &file::FileValue> = HashMap::new();
    let mut out = Vec::with_capacity(values.len());
    for value in values {
        let key = &value.key;
        let Some((long, id)) = names.get(&value.flag.replace('-', "_")) else {
            return Err(format!(
                "config file {file}: unknown option {key:?} (neither ferrocable nor anycable-go has it)"
            ));
        };
        if NOT_IN_A_FILE.contains(&long.as_str()) {
            return Err(format!(
                "config file {file}: {key} has no meaning in a config file (it chooses or prints \
                 the configuration: give it as a flag or variable)"
            ));
        }
        let arg = cli
            .get_arguments()
            .find(|a| a.get_id().as_str() == id)
            .expect("every name is an argument's");
        // anycable-go's options we do not implement are text, warned about
        // or refused by name later: any scalar or list will do.
        let foreign = anycable::OPTIONS.iter().any(|o| o.name == long);
        let parser = arg.get_value_parser();
        let is = |t: std::any::TypeId| parser.type_id() == t;
        use std::any::TypeId;
        let (takes, ok): (&str, &[Kind]) = if foreign {
            (
                "a string, a number, a boolean or an array",
                &[
                    Kind::String,
                    Kind::Integer,
                    Kind::Float,
                    Kind::Boolean,
                    Kind::Array,
                ],
            )
        } else if long == "metrics_tags" {
            ("a table or a string", &[Kind::Table, Kind::String])
        } else if arg.get_value_delimiter().is_some() || ARRAY_OPTIONS.contains(&long.as_str()) {
            ("an array or a string", &[Kind::Array, Kind::String])
        } else if is(TypeId::of::<bool>()) {
            ("a boolean", &[Kind::Boolean, Kind::String])
        } else if is(TypeId::of::<String>())
            || is(TypeId::of::<PathBuf>())
            || !arg.get_possible_values().is_empty()
        {
            ("a string", &[Kind::String])
        } else {
            ("an integer", &[Kind::Integer, Kind::String])
        };
        if !ok.contains(&value.kind) {
            return Err(format!(
                "config file {file}: {key} is {} ({:?}); option {long} takes {takes}",
                value.kind.name(),
                value.text
            ));
        }
        if let Some(before) = seen.insert(id.as_str(), value)
            && before.text != value.text
        {
            return Err(format!(
                "config file {file}: {} = {:?} and {key} = {:?} set the same option ({long}) \
                 differently; keep one",
                before.key, before.text, value.text
            ));
        }
        out.push((value.flag.clone(), value.text.clone()));
    }
    Ok(out)
}

/// A value clap refused names where it came from: a variable or the config
/// file (clap only names the flag, though neither was a flag).
fn attribute(
    e: clap::Error,
    names: &HashMap<String, (String, String)>,
    path: Option<&std::path::Path>,
    file_values: &[file::FileValue],
) -> clap::Error {
    use clap::error::{ContextKind, ContextValue};
    let text = |kind| match e.get(kind) {
        Some(ContextValue::String(s)) => Some(s.clone()),
        _ => None,
    };
    let (Some(arg), Some(bad)) = (
        text(ContextKind::InvalidArg),
        text(ContextKind::InvalidValue),
    ) else {
        return e;
    };
    let flag = arg.split([' ', '=']).next().unwrap_or_default();
    let Some((long, id)) = names.get(&flag.trim_start_matches('-').replace('-', "_")) else {
        return e;
    };
    let first = e.to_string();
    let message = first
        .lines()
        .next()
        .unwrap_or_default()
        .trim_start_matches("error: ");
    let var = env_name(long);
    let aliases = ENV_ALIASES
        .iter()
        .filter(|(main, _, _)| *main == var)
        .map(|(_, alias, _)| alias.to_string());
    for name in std::iter::once(var.clone()).chain(aliases) {
        if let Ok(value) = std::env::var(&name)
            && (value == bad || value.split(',').any(|v| v == bad))
        {
            return invalid(
                e.kind(),
                format!("environment variable {name}={value:?}: {message}"),
            );
        }
    }
    let from_file = file_values.iter().find(|v| {
        names
            .get(&v.flag.replace('-', "_"))
            .is_some_and(|(_, i)| i == id)
    });
    match (path, from_file) {
        (Some(path), Some(v)) => invalid(
            e.kind(),
            format!(
                "config file {}: {} = {:?}: {message}",
                path.display(),
                v.key,
                v.text
            ),
        ),
        _ => e,
    }
}

impl Config {
    /// The command line: the options above, each with its `ANYCABLE_`
    /// variable, and anycable-go's other options (hidden from `--help`,
    /// checked after parsing).
    pub fn cli() -> clap::Command {
        let foreign = anycable::OPTIONS.iter().map(|o| {
            let arg = clap::Arg::new(o.name).long(o.name).hide(true);
            match o.flag {
                true => arg.num_args(0..=1).default_missing_value("true"),
                false => arg.num_args(1).allow_hyphen_values(true),
            }
        });
        let mut heading = None;
        let mut cmd = <Config as CommandFactory>::command();
        let ids: Vec<String> = cmd
            .get_arguments()
            .map(|a| a.get_id().to_string())
            .collect();
        for id in ids {
            if let Some((_, h)) = HEADINGS.iter().find(|(first, _)| *first == id) {
                heading = Some(*h);
            }
            cmd = cmd.mut_arg(id, |a| match a.get_long().map(env_name) {
                Some(env) => a.env(env).help_heading(heading),
                None => a,
            });
        }
        cmd.args(foreign)
            .mut_args(|a| match a.get_long().map(env_name) {
                Some(env) if a.is_hide_set() => a.env(env),
                _ => a,
            })
    }

    /// Every option at its default value (what `--help` shows), ignoring
    /// the environment: the starting point for embedders and tests.
    pub fn defaults() -> Self {
        let mut matches = <Config as CommandFactory>::command()
            .try_get_matches_from(["ferrocable"])
            .expect("the defaults parse");
        Config::from_arg_matches_mut(&mut matches).expect("the defaults parse")
    }

    /// Parses flags, environment and the file named by `--config-path`, in
    /// that precedence. Errors are clap errors, so the binary prints them
    /// and exits with 2.
    pub fn load<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        Self::load_from(args, Files::Named)
    }

    /// [`Config::load`], choosing which files are read.
    pub fn load_from<I, T>(args: I, files: Files) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        Self::load_layered(args, files, &[])
    }

    /// The gem's defaults for a server in a Rails process, beneath the
    /// environment and the file: HTTP broadcasts (Rails broadcasts go
    /// straight into the hub), the application's capacity as its worker
    /// threads (Disconnect calls hold at most a quarter of them, so hanging
    /// `disconnect` callbacks never take every worker), and Disconnect calls
    /// not paced (no network to spare: `unsubscribed`/`disconnect` run as
    /// the sockets close, as under Action Cable).
    pub fn gem_defaults(worker_pool_size: usize) -> Vec<(&'static str, String)> {
        vec![
            ("broadcast_adapter", "http".into()),
            ("rpc_concurrency", worker_pool_size.to_string()),
            ("disconnect_rate", "0".into()),
        ]
    }

    /// [`Config::load_from`] with `defaults` (flag name, value) in place of
    /// the built-in defaults: the file, the environment and flags win.
    pub fn load_layered<I, T>(
        args: I,
        files: Files,
        defaults: &[(&str, String)],
    ) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        Self::load_in(args, files, defaults, false)
    }

    /// The gem's configuration: [`Config::load_layered`] with the gem's
    /// defaults, and secret options of features not implemented yet
    /// (`jwt_secret`, `turbo_rails_key`, ...) warned about instead of
    /// refused: in the gem the application runs Action Cable's own checks
    /// (and turbo-rails' verifier), so ignoring them weakens nothing, and
    /// an app migrating from AnyCable with them still set must boot.
    pub fn load_for_gem<I, T>(args: I, worker_pool_size: usize) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        Self::load_in(
            args,
            Files::Named,
            &Self::gem_defaults(worker_pool_size),
            true,
        )
    }

    fn load_in<I, T>(
        args: I,
        files: Files,
        defaults: &[(&str, String)],
        in_gem: bool,
    ) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
        let cfg = Self::load_pass(args.clone(), files, defaults, in_gem)?;
        // Presets are the binary's (anycable-go's); the gem runs inside the
        // application and has its own defaults.
        if in_gem {
            let mut cfg = cfg;
            if let Some(p) = cfg.presets.as_deref().filter(|p| !p.trim().is_empty()) {
                cfg.warnings.push(format!(
                    "option presets ({p}) is the standalone server's (anycable-go's) and has no effect in the gem"
                ));
            }
            return Ok(cfg);
        }
        let env = |name: &str| std::env::var(name).ok();
        let names = presets::names(cfg.presets.as_deref(), &env);
        if names.is_empty() {
            return Ok(cfg);
        }
        let found = presets::resolve(&names, &cfg, &env)
            .map_err(|e| invalid(clap::error::ErrorKind::ValueValidation, e))?;
        let mut layered = defaults.to_vec();
        layered.extend(found.defaults);
        let mut cfg = Self::load_pass(args, files, &layered, in_gem)?;
        cfg.warnings.extend(found.warnings);
        cfg.presets_applied = found.names;
        Ok(cfg)
    }

    /// One reading of flags, environment and file over `defaults`.
    fn load_pass(
        args: Vec<OsString>,
        files: Files,
        defaults: &[(&str, String)],
        in_gem: bool,
    ) -> Result<Self, clap::Error> {
        use clap::error::ErrorKind;
        let cli = Self::cli();
        // Every spelling (long names and aliases, `-` as `_`) → (long, id).
        let mut names: HashMap<String, (String, String)> = HashMap::new();
        for arg in cli.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            let id = arg.get_id().to_string();
            for name in std::iter::once(long).chain(arg.get_all_aliases().unwrap_or_default()) {
                names.insert(name.replace('-', "_"), (long.to_owned(), id.clone()));
            }
        }
        for builtin in ["help", "version"] {
            names.insert(builtin.into(), (builtin.into(), builtin.into()));
        }
        let longs = names
            .iter()
            .map(|(k, (long, _))| (k.clone(), long.clone()))
            .collect();
        let args = anycable::normalize_args(args, &longs);

        // Which file: a first, lenient pass over flags and environment.
        let first = cli
            .clone()
            .ignore_errors(true)
            .try_get_matches_from(&args)
            .ok();
        let ignore = first
            .as_ref()
            .and_then(|m| {
                m.try_get_one::<bool>("ignore_config_path")
                    .ok()
                    .flatten()
                    .copied()
            })
            .unwrap_or(false);
        let named = first.as_ref().and_then(|m| {
            m.try_get_one::<PathBuf>("config_path")
                .ok()
                .flatten()
                .cloned()
        });
        let path = match named {
            _ if ignore => None,
            Some(path) => Some(path),
            None if files == Files::Default => DEFAULT_FILES
                .iter()
                .map(PathBuf::from)
                .find(|p| p.is_file()),
            None => None,
        };
        let from_file = match &path {
            Some(path) => file::read(path).map_err(|e| invalid(ErrorKind::Io, e))?,
            None => Default::default(),
        };

        let file_values = match &path {
            Some(path) => check_file(path, &cli, &names, &from_file.values)
                .map_err(|e| invalid(ErrorKind::ValueValidation, e))?,
            None => Vec::new(),
        };
        let mut env_warnings = Vec::new();
        for (main, alias, anycable_go) in ENV_ALIASES {
            let (Ok(a), Ok(b)) = (std::env::var(main), std::env::var(alias)) else {
                continue;
            };
            if a == b {
                continue;
            }
            let both = format!("{main}={a:?} and {alias}={b:?} differ");
            match anycable_go {
                true => env_warnings.push(format!("{both}; {main} applies, as in anycable-go")),
                false => {
                    return Err(invalid(
                        ErrorKind::ArgumentConflict,
                        format!("{both}: they name the same option; set one"),
                    ));
                }
            }
        }

        // File values and variable aliases become defaults: a flag or an
        // `ANYCABLE_` variable still wins.
        let aliases = ENV_ALIASES.iter().filter_map(|(main, alias, _)| {
            let value = std::env::var(alias).ok()?;
            let long = main.trim_start_matches("ANYCABLE_").to_lowercase();
            Some((long, value))
        });
        let mut cmd = cli;
        let layered = defaults.iter().map(|(k, v)| (k.to_string(), v.clone()));
        for (key, value) in layered.chain(file_values).chain(aliases) {
            let Some((_, id)) = names.get(&key.replace('-', "_")) else {
                return Err(invalid(
                    ErrorKind::UnknownArgument,
                    format!("unknown option {key:?}"),
                ));
            };
            cmd = cmd.mut_arg(id.as_str(), move |a| a.default_value(value));
        }
        let mut matches = cmd
            .try_get_matches_from(args)
            .map_err(|e| attribute(e, &names, path.as_deref(), &from_file.values))?;
        let mut cfg = Config::from_arg_matches_mut(&mut matches)?;
        cfg.warnings = from_file.warnings;
        cfg.warnings.extend(env_warnings);
        if let Some(path) = path {
            cfg.config_path = Some(path);
        }

        for option in anycable::OPTIONS {
            let Some(value) = matches.get_one::<String>(option.name) else {
                continue;
            };
            cfg.anycable.insert(option.name.to_owned(), value.clone());
            match anycable::check(option, value) {
                Ok(warning) => cfg.warnings.extend(warning),
                Err(_) if in_gem && option.is_secret() => cfg.warnings.push(format!(
                    "option {} is set but has no effect in the gem (not implemented yet); the \
                     application's own checks (Action Cable, turbo-rails) still apply",
                    option.name
                )),
                Err(e) => return Err(invalid(ErrorKind::ValueValidation, e)),
            }
        }
        cfg.apply_deprecated();
        // An empty path is no path, as in anycable-go (`ANYCABLE_SSL_CERT=`).
        for path in [
            &mut cfg.ssl_cert,
            &mut cfg.ssl_key,
            &mut cfg.rpc_tls_root_ca,
            &mut cfg.redis_tls_ca_cert_path,
            &mut cfg.redis_tls_client_cert_path,
            &mut cfg.redis_tls_client_key_path,
        ] {
            if path.as_ref().is_some_and(|p| p.is_empty()) {
                *path = None;
            }
        }
        cfg.validate()
            .map_err(|e| invalid(ErrorKind::ValueValidation, e))?;
        let redis = cfg.redis_target();
        if cfg.has_adapter(BroadcastAdapter::Redis) || cfg.has_adapter(BroadcastAdapter::Redisx) {
            cfg.warnings.extend(redis.warnings());
        }
        // The gem says it only when it is one of several processes (a Puma
        // cluster worker): see `Config::one_node_broadcasts_warning`.
        let one_node = cfg.one_node_broadcasts_warning();
        let reach = cfg.broadcast_reach_warnings();
        cfg.warnings.extend(
            reach
                .into_iter()
                .filter(|w| !in_gem || Some(w) != one_node.as_ref()),
        );
        if cfg.rpc_transport() == RpcTransport::Http
            && cfg.rpc_client_tls().is_none()
            && cfg.rpc_tls().is_some()
        {
            cfg.warnings.push(
                "rpc_enable_tls / rpc_tls_root_ca have no effect on an http:// rpc_host (HTTP RPC is \
                 plaintext, as in anycable-go): use an https:// URL for TLS"
                    .into(),
            );
        }
        if cfg.rpc_client_tls().is_some_and(|tls| !tls.verify) {
            cfg.warnings.push(
                "rpc_tls_verify is false: the RPC server's certificate is not checked (insecure: tests and development only)"
                    .into(),
            );
        }
        Ok(cfg)
    }

    /// anycable-go's deprecated spellings, applied as it applies them.
    fn apply_deprecated(&mut self) {
        if self.debug {
            self.log_level = LogLevel::Debug;
        }
        if self.disable_disconnect {
            self.disconnect_mode = DisconnectMode::Never;
            self.warnings.push(
                "option disable_disconnect is deprecated in anycable-go; use disconnect_mode=never"
                    .into(),
            );
        }
        if self.metrics_log_interval > 0 {
            self.warnings.push(
                "option metrics_log_interval is deprecated in anycable-go; use metrics_rotate_interval"
                    .into(),
            );
        }
        if self.http_rpc_timeout > 0 {
            self.warnings.push(
                "option http_rpc_timeout is deprecated in anycable-go; use rpc_request_timeout"
                    .into(),
            );
        }
        // The fast lane's 1.0–1.4 names, as anycable-go's cli/options.go
        // applies them (checked against anycable-go 1.6): jwt_id_key only
        // when jwt_secret is unset, turbo_rails_key always, and turning
        // turbo_streams on. Cleared once applied, so `to_args` does not
        // carry them (and their warnings) twice.
        if let Some(key) = self.jwt_id_key.take().filter(|k| !k.is_empty()) {
            if self.jwt_secret.as_deref().is_none_or(str::is_empty) {
                self.jwt_secret = Some(key);
            }
            self.warnings
                .push("option jwt_id_key is deprecated in anycable-go; use jwt_secret".into());
        }
        if let Some(param) = self.jwt_id_param.take().filter(|p| !p.is_empty()) {
            if self.jwt_param == "jid" {
                self.jwt_param = param;
            }
            self.warnings
                .push("option jwt_id_param is deprecated in anycable-go; use jwt_param".into());
        }
        if std::mem::take(&mut self.jwt_id_enforce) {
            self.enforce_jwt = true;
            self.warnings
                .push("option jwt_id_enforce is deprecated in anycable-go; use enforce_jwt".into());
        }
        if let Some(key) = self.turbo_rails_key.take().filter(|k| !k.is_empty()) {
            self.turbo_streams_secret = Some(key);
            self.turbo_streams = true;
            self.warnings.push(
                "option turbo_rails_key is deprecated in anycable-go; use turbo_streams_secret (and turbo_streams)"
                    .into(),
            );
        }
        if self
            .http_broadcast_secret
            .as_deref()
            .is_some_and(|s| !s.is_empty())
        {
            self.warnings.push(
                "option http_broadcast_secret is deprecated in anycable-go; use broadcast_key"
                    .into(),
            );
        }
    }

    /// Flags that load this configuration again, exactly (no file is read:
    /// its values are in the flags). How the gem hands the configuration it
    /// resolved to the server it starts.
    pub fn to_args(&self) -> Vec<String> {
        let serde_json::Value::Object(values) =
            serde_json::to_value(self).expect("the configuration serializes")
        else {
            unreachable!("a struct serializes to an object")
        };
        let cli = <Config as CommandFactory>::command();
        let mut args = vec!["--ignore-config-path=true".to_owned()];
        for (id, value) in values {
            let Some(long) = cli
                .get_arguments()
                .find(|a| a.get_id() == id.as_str())
                .and_then(|a| a.get_long())
            else {
                continue; // warnings, anycable (below)
            };
            let text = match value {
                serde_json::Value::Null => continue,
                serde_json::Value::String(s) => s,
                serde_json::Value::Array(items) if items.is_empty() => continue,
                serde_json::Value::Array(items) => items
                    .iter()
                    .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                    .collect::<Vec<_>>()
                    .join(","),
                other => other.to_string(),
            };
            if !matches!(id.as_str(), "config_path" | "ignore_config_path") {
                args.push(format!("--{long}={text}"));
            }
        }
        args.extend(self.anycable.iter().map(|(k, v)| format!("--{k}={v}")));
        args
    }

    /// The configuration as a flat TOML file (`--print-config`), which
    /// `--config-path` reads back: every option, anycable-go's unimplemented
    /// ones included.
    pub fn to_toml(&self) -> String {
        let mut out = String::from("# ferrocable configuration (flat: the flag names as keys)\n");
        for arg in self.to_args() {
            let (name, value) = arg
                .trim_start_matches('-')
                .split_once('=')
                .expect("to_args gives --name=value");
            if name == "ignore-config-path" {
                continue;
            }
            let value = match value.parse::<i64>() {
                Ok(n) => n.to_string(),
                Err(_) if matches!(value, "true" | "false") => value.to_owned(),
                Err(_) => toml::Value::String(value.to_owned()).to_string(),
            };
            out.push_str(&format!("{} = {value}\n", name.replace('-', "_")));
        }
        out
    }

    /// Where a process without a server of its own posts HTTP broadcasts:
    /// the endpoint this configuration serves, if it serves one.
    pub fn http_broadcast_url(&self) -> Option<String> {
        let port = match self.http_broadcast_listener()? {
            BroadcastListener::Main => self.port,
            BroadcastListener::Port(port) => port,
        };
        let host = match self.host.as_str() {
            "" | "0.0.0.0" | "::" | "[::]" => "localhost",
            host => host,
        };
        let scheme = if self.tls() { "https" } else { "http" };
        Some(format!(
            "{scheme}://{host}:{port}{}",
            self.http_broadcast_path
        ))
    }

    /// The resolved configuration for the gem (JSON): every option, the
    /// broadcast key and URL the core derives, and the flags that load it
    /// again ([`Config::to_args`]).
    pub fn resolution(&self) -> serde_json::Value {
        let mut value = serde_json::to_value(self).expect("the configuration serializes");
        value["effective_broadcast_key"] = self.effective_broadcast_key().into();
        value["effective_http_rpc_secret"] = self.effective_http_rpc_secret().into();
        value["effective_jwt_secret"] = self.jwt_key().into();
        value["effective_streams_secret"] = self.streams_key().into();
        value["http_broadcast_url"] = self.http_broadcast_url().into();
        value["args"] = self.to_args().into();
        value
    }

    /// Logs the warnings found while loading (call once logging is set up).
    pub fn log_warnings(&self) {
        if !self.presets_applied.is_empty() {
            tracing::info!(presets = %self.presets_applied.join(","), "load presets");
        }
        for warning in &self.warnings {
            tracing::warn!("{warning}");
        }
    }

    /// Checks ranges and combinations that single values cannot express.
    /// Out-of-range values are refused here, at start, with the range: an
    /// absurd one (a timeout of 2^64 ms) used to surface as a panic in the
    /// first session that used it.
    pub fn validate(&self) -> Result<(), ConfigError> {
        // A shared broker positions each broadcast once for the cluster; a
        // transport that hands every broadcast to every node would have it
        // positioned once per node (or, deduplicated by content, lose
        // repeated payloads after a node restarts). anycable-go pairs its
        // broker with broadcasts that reach one node too.
        if self.broker == Some(BrokerAdapter::Redis) && self.has_fanout_adapter() {
            return Err(ConfigError(
                "broker=redis needs broadcasts that reach one node each (broadcast_adapter http or redisx); \
                 redis (pub/sub) and nats hand every broadcast to every node: use broadcast_adapter=redisx, \
                 or broker=memory"
                    .into(),
            ));
        }
        const DAY_S: u64 = 24 * 3600;
        const GIB: u64 = 1 << 30;
        // redisx_read_block_milliseconds=0 would be XREADGROUP's BLOCK 0,
        // a read that never ends (the connection's response timeout would
        // cut it as a failure, over and over).
        let ranges: [(&str, u64, u64, u64, &str); 15] = [
            (
                "rpc_concurrency",
                self.rpc_concurrency as u64,
                1,
                100_000,
                "",
            ),
            (
                "rpc_request_timeout",
                self.rpc_request_timeout,
                0,
                DAY_S * 1000,
                " ms",
            ),
            (
                "rpc_command_timeout",
                self.rpc_command_timeout,
                0,
                DAY_S * 1000,
                " ms",
            ),
            ("ping_interval", self.ping_interval, 1, DAY_S, " s"),
            ("shutdown_timeout", self.shutdown_timeout, 0, DAY_S, " s"),
            ("shutdown_delay", self.shutdown_delay, 0, DAY_S, " s"),
            (
                "redisx_read_block_milliseconds",
                self.redisx_read_block_milliseconds,
                1,
                300_000,
                " ms",
            ),
            ("ws_write_timeout", self.ws_write_timeout, 1, DAY_S, " s"),
            (
                "max_message_size",
                self.max_message_size as u64,
                1,
                GIB,
                " bytes",
            ),
            (
                "read_buffer_size",
                self.read_buffer_size as u64,
                1,
                64 << 20,
                " bytes",
            ),
            (
                "write_buffer_size",
                self.write_buffer_size as u64,
                1,
                64 << 20,
                " bytes",
            ),
            (
                "max_subscriptions",
                self.max_subscriptions as u64,
                1,
                1_000_000,
                "",
            ),
            (
                "disconnect_backlog",
                self.disconnect_backlog as u64,
                1,
                10_000_000,
                "",
            ),
            (
                "disconnect_rate",
                self.disconnect_rate as u64,
                0,
                1_000_000,
                " per second",
            ),
            (
                "max_session_state_size",
                self.max_session_state_size as u64,
                1,
                GIB,
                " bytes",
            ),
        ];
        for (name, value, min, max, unit) in ranges {
            if !(min..=max).contains(&value) {
                return Err(ConfigError(format!(
                    "{name} must be between {min} and {max}{unit} (got {value})"
                )));
            }
        }
        for p in self
            .path
            .iter()
            .chain([&self.health_path, &self.http_broadcast_path])
        {
            if !p.starts_with('/') {
                return Err(ConfigError(format!("path {p:?} must start with '/'")));
            }
        }
        if self.has_adapter(BroadcastAdapter::Http) && self.effective_broadcast_key().is_none() {
            let shares = match self.http_broadcast_port {
                0 => self.port == KEYLESS_BROADCAST_PORT,
                port => port == self.port,
            };
            if shares {
                return Err(ConfigError(format!(
                    "HTTP broadcasts without a key cannot share the WebSocket port {}: anyone who can \
                     open a socket could broadcast and disconnect users. Set broadcast_key (or secret), \
                     or an http_broadcast_port of their own",
                    self.port
                )));
            }
        }
        match self.rpc_impl.trim().to_ascii_lowercase().as_str() {
            "" | "grpc" | "http" => {}
            other => {
                return Err(ConfigError(format!(
                    "rpc_impl must be grpc or http (got {other:?}); refusing to start"
                )));
            }
        }
        if self.rpc_transport() == RpcTransport::Http {
            let scheme = self.rpc_host.split_once("://").map(|(s, _)| s);
            if !matches!(scheme, Some("http" | "https")) {
                return Err(ConfigError(format!(
                    "rpc_impl=http needs an http:// URL as rpc_host (e.g. http://localhost:3000/_anycable), \
                     got {:?}; refusing to start",
                    self.rpc_host
                )));
            }
        }
        match (&self.ssl_cert, &self.ssl_key) {
            (Some(_), None) => {
                return Err(ConfigError(
                    "ssl_cert is set without ssl_key: TLS needs both (the listeners would be plaintext)"
                        .into(),
                ));
            }
            (None, Some(_)) => {
                return Err(ConfigError(
                    "ssl_key is set without ssl_cert: TLS needs both (the listeners would be plaintext)"
                        .into(),
                ));
            }
            _ => {}
        }
        match (
            &self.redis_tls_client_cert_path,
            &self.redis_tls_client_key_path,
        ) {
            (Some(_), None) | (None, Some(_)) => {
                return Err(ConfigError(
                    "redis_tls_client_cert_path and redis_tls_client_key_path go together (mutual TLS needs both)"
                        .into(),
                ));
            }
            _ => {}
        }
        self.metrics_tags().map_err(ConfigError)?;
        self.statsd_tags_format().map_err(ConfigError)?;
        if !self.statsd_host.trim().is_empty()
            && !(64..=65_507).contains(&self.statsd_max_packet_size)
        {
            return Err(ConfigError(format!(
                "statsd_max_packet_size must be between 64 and 65507 bytes (got {})",
                self.statsd_max_packet_size
            )));
        }
        if !self.metrics_http.is_empty() && !self.metrics_http.starts_with('/') {
            return Err(ConfigError(format!(
                "metrics_http {:?} must start with '/'",
                self.metrics_http
            )));
        }
        // Without a key these would let every connection or subscription
        // reach the application (or none at all): refused, never ignored.
        if self.enforce_jwt && self.jwt_key().is_none() {
            return Err(ConfigError(
                "enforce_jwt needs a key to verify tokens with: set jwt_secret (or secret); refusing to start"
                    .into(),
            ));
        }
        if self.turbo_streams && self.turbo_key().is_none() {
            return Err(ConfigError(
                "turbo_streams needs a key to verify stream names with: set turbo_streams_secret (or streams_secret, or secret); refusing to start"
                    .into(),
            ));
        }
        if let Some(hex) = self
            .turbo_streams_key_hex
            .as_deref()
            .filter(|h| !h.is_empty())
            && hex::decode(hex).is_err()
        {
            return Err(ConfigError(
                "turbo_streams_key_hex must be hex (the bytes of turbo-rails' key)".into(),
            ));
        }
        if self.jwt_param.is_empty() {
            return Err(ConfigError("jwt_param must not be empty".into()));
        }
        Ok(())
    }

    /// TLS to the RPC server, as anycable-go turns it on: `rpc_enable_tls`,
    /// or a CA given in `rpc_tls_root_ca`.
    pub fn rpc_tls(&self) -> Option<ClientTls> {
        (self.rpc_enable_tls || self.rpc_tls_root_ca.is_some()).then(|| ClientTls {
            ca_option: "rpc_tls_root_ca",
            ca: self.rpc_tls_root_ca.clone(),
            verify: self.rpc_tls_verify,
        })
    }

    /// The TLS the RPC client uses: gRPC's as [`Config::rpc_tls`] turns it
    /// on; HTTP RPC's for an `https://` rpc_host (the scheme turns it on, as
    /// in anycable-go), checked with `rpc_tls_root_ca` and `rpc_tls_verify`.
    pub fn rpc_client_tls(&self) -> Option<ClientTls> {
        match self.rpc_transport() {
            RpcTransport::Grpc => self.rpc_tls(),
            RpcTransport::Http => {
                let https = self
                    .rpc_host
                    .get(..8)
                    .is_some_and(|s| s.eq_ignore_ascii_case("https://"));
                https.then(|| ClientTls {
                    ca_option: "rpc_tls_root_ca",
                    ca: self.rpc_tls_root_ca.clone(),
                    verify: self.rpc_tls_verify,
                })
            }
        }
    }

    /// How to reach Redis: `redis_url` and the `redis_tls_*` options.
    pub fn redis_target(&self) -> RedisTarget {
        RedisTarget {
            url: self.redis_url.clone(),
            tls_verify: self.redis_tls_verify,
            ca_cert_path: self.redis_tls_ca_cert_path.clone(),
            client_cert: self
                .redis_tls_client_cert_path
                .clone()
                .zip(self.redis_tls_client_key_path.clone()),
        }
    }

    /// Whether a broadcast transport hands every broadcast to every node
    /// (Redis pub/sub, NATS): such broadcasts cannot be positioned once for
    /// a cluster (nothing in them names them the same way on every node).
    pub fn has_fanout_adapter(&self) -> bool {
        self.has_adapter(BroadcastAdapter::Redis) || self.has_adapter(BroadcastAdapter::Nats)
    }

    /// What to say at start about broadcasts that enter one node only (HTTP
    /// `/_broadcast`; in the gem, broadcasts made in the process): with no
    /// `pubsub` they reach that node's clients only (as in anycable-go, which
    /// says nothing); with one they are passed on to the other nodes, signed
    /// with a key derived from the broadcast key, unsigned without one
    /// (said when no other adapter takes unsigned broadcasts from the same
    /// kind of server: Redis or NATS access already lets one broadcast).
    fn broadcast_reach_warnings(&self) -> Vec<String> {
        if !self.has_adapter(BroadcastAdapter::Http) {
            return Vec::new();
        }
        let unsigned_elsewhere =
            self.has_fanout_adapter() || self.has_adapter(BroadcastAdapter::Redisx);
        match (self.pubsub(), self.effective_broadcast_key()) {
            (PubsubAdapter::Redis | PubsubAdapter::Nats, None) if unsigned_elsewhere => Vec::new(),
            (PubsubAdapter::None, _) => self.one_node_broadcasts_warning().into_iter().collect(),
            (_, None) => vec![
                "no broadcast key (broadcast_key or secret): the broadcasts and remote disconnects this \
                 node passes on to the others over pubsub are not signed, and it takes unsigned ones: \
                 anyone who can publish on __anycable_internal__ can broadcast and disconnect users"
                    .into(),
            ],
            _ => Vec::new(),
        }
    }

    /// With `broadcast_adapter=http` and `pubsub=none`: that a broadcast
    /// entering this node reaches its clients only. The binary says it at
    /// start (it cannot know whether it has peers); the gem when it serves
    /// as one of several processes (a Puma cluster worker), not in every
    /// single-process application.
    pub fn one_node_broadcasts_warning(&self) -> Option<String> {
        (self.has_adapter(BroadcastAdapter::Http) && self.pubsub() == PubsubAdapter::None).then(|| {
            "broadcast_adapter=http with pubsub=none: a broadcast sent to this node's /_broadcast \
             (or, in the gem, made in this process) reaches this node's clients only; with several \
             nodes set pubsub=redis or pubsub=nats, so it reaches every node"
                .to_owned()
        })
    }

    /// The broker in use: `broker`, or by default Redis when Redis is
    /// configured (`redis_url` set, or redisx among the broadcast adapters)
    /// and no broadcast transport fans out to every node (see
    /// [`Config::has_fanout_adapter`]), else memory.
    pub fn broker(&self) -> BrokerAdapter {
        self.broker.unwrap_or_else(|| {
            let redis_set =
                self.redis_url != DEFAULT_REDIS_URL || self.has_adapter(BroadcastAdapter::Redisx);
            match redis_set && !self.has_fanout_adapter() {
                true => BrokerAdapter::Redis,
                false => BrokerAdapter::Memory,
            }
        })
    }

    /// The pub/sub between nodes in use: `pubsub`, or by default Redis
    /// when the node uses Redis (broker=redis, a redis or redisx broadcast
    /// adapter), else NATS when it is a broadcast adapter, else none
    /// (anycable-go's default is none; every cluster here has a transport
    /// to share, so whispers and presence cross nodes without a setting).
    pub fn pubsub(&self) -> PubsubAdapter {
        self.pubsub.unwrap_or_else(|| {
            if self.broker() == BrokerAdapter::Redis
                || self.has_adapter(BroadcastAdapter::Redis)
                || self.has_adapter(BroadcastAdapter::Redisx)
            {
                PubsubAdapter::Redis
            } else if self.has_adapter(BroadcastAdapter::Nats) {
                PubsubAdapter::Nats
            } else {
                PubsubAdapter::None
            }
        })
    }

    /// Where the pub/sub between nodes runs (see [`Config::pubsub`]).
    pub fn pubsub_transport(&self) -> Option<crate::broadcast::pubsub::Transport> {
        use crate::broadcast::pubsub::Transport;
        match self.pubsub() {
            PubsubAdapter::None => None,
            PubsubAdapter::Redis => Some(Transport::Redis(self.redis_target())),
            PubsubAdapter::Nats => Some(Transport::Nats(crate::broadcast::nats::Options {
                servers: self.nats_servers.clone(),
                subject: crate::broadcast::pubsub::CHANNEL.into(),
                in_order: self.nats_dont_randomize_servers,
            })),
        }
    }

    /// What the broker keeps (`history_limit`, `history_ttl`, `sessions_ttl`, `presence_ttl`).
    pub fn broker_limits(&self) -> crate::broker::Limits {
        crate::broker::Limits {
            history_limit: self.history_limit,
            history_ttl: Duration::from_secs(self.history_ttl),
            sessions_ttl: Duration::from_secs(self.sessions_ttl),
            presence_ttl: Duration::from_secs(self.presence_ttl.max(1)),
        }
    }

    /// Whether the listeners serve TLS (`ssl_cert` and `ssl_key`).
    pub fn tls(&self) -> bool {
        self.ssl_cert.is_some() && self.ssl_key.is_some()
    }

    pub fn ping_interval(&self) -> Duration {
        Duration::from_secs(self.ping_interval)
    }

    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_secs(self.shutdown_timeout)
    }

    /// `metrics_tags` as (label, value) pairs: `env:prod,region:eu`, as
    /// anycable-go reads it (checked against anycable-go 1.6 cli/options.go
    /// parseTags), refusing what would not be a Prometheus label.
    pub fn metrics_tags(&self) -> Result<Vec<(String, String)>, String> {
        let mut tags = Vec::new();
        for item in self.metrics_tags.split(',').map(str::trim) {
            if item.is_empty() {
                continue;
            }
            let Some((key, value)) = item.split_once(':') else {
                return Err(format!(
                    "metrics_tags: {item:?} is not key:value (e.g. metrics_tags=env:prod,region:eu)"
                ));
            };
            let label = key
                .chars()
                .enumerate()
                .all(|(i, c)| c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit()));
            if key.is_empty() || !label || key.starts_with("__") {
                return Err(format!(
                    "metrics_tags: {key:?} is not a valid metric label name (letters, digits, _)"
                ));
            }
            if value.contains(['"', '\\', '\n']) {
                return Err(format!(
                    "metrics_tags: the value of {key} may not contain quotes, backslashes or newlines"
                ));
            }
            tags.push((key.to_owned(), value.to_owned()));
        }
        Ok(tags)
    }

    /// The StatsD writer `statsd_host` asks for, if any.
    pub fn statsd(&self) -> Option<crate::metrics::Statsd> {
        let host = self.statsd_host.trim();
        if host.is_empty() {
            return None;
        }
        Some(crate::metrics::Statsd {
            host: host.to_owned(),
            prefix: self.statsd_prefix.clone(),
            tags_format: self.statsd_tags_format().ok()?,
            max_packet_size: self.statsd_max_packet_size,
            tags: self.metrics_tags().unwrap_or_default(),
        })
    }

    fn statsd_tags_format(&self) -> Result<crate::metrics::TagsFormat, String> {
        use crate::metrics::TagsFormat;
        match self.statsd_tags_format.trim().to_ascii_lowercase().as_str() {
            "datadog" => Ok(TagsFormat::Datadog),
            "influxdb" => Ok(TagsFormat::Influxdb),
            "graphite" => Ok(TagsFormat::Graphite),
            other => Err(format!(
                "statsd_tags_format must be datadog, influxdb or graphite (got {other:?})"
            )),
        }
    }

    /// The server's metrics, labelled with `metrics_tags`.
    pub fn metrics(&self) -> crate::metrics::Metrics {
        crate::metrics::Metrics::with_tags(&self.metrics_tags().unwrap_or_default())
    }

    /// How often `metrics_log` logs: `metrics_rotate_interval`, else the
    /// deprecated `metrics_log_interval`, else anycable-go's 15 s.
    pub fn metrics_rotate_interval(&self) -> Duration {
        let seconds = [self.metrics_rotate_interval, self.metrics_log_interval]
            .into_iter()
            .find(|s| *s > 0)
            .unwrap_or(15);
        Duration::from_secs(seconds)
    }

    pub fn shutdown_delay(&self) -> Duration {
        Duration::from_secs(self.shutdown_delay)
    }

    pub fn ws_write_timeout(&self) -> Duration {
        Duration::from_secs(self.ws_write_timeout)
    }

    pub fn slow_call_threshold(&self) -> Duration {
        Duration::from_millis(self.slow_call_threshold)
    }

    /// How the application is called: `rpc_impl`, else anycable-go's
    /// inference (HTTP RPC for an `http(s)://` `rpc_host`, else gRPC).
    pub fn rpc_transport(&self) -> RpcTransport {
        match self.rpc_impl.trim().to_ascii_lowercase().as_str() {
            "http" => RpcTransport::Http,
            "grpc" => RpcTransport::Grpc,
            _ => {
                let scheme = self.rpc_host.split_once("://").map(|(s, _)| s);
                match scheme.map(str::to_ascii_lowercase).as_deref() {
                    Some("http" | "https") => RpcTransport::Http,
                    _ => RpcTransport::Grpc,
                }
            }
        }
    }

    /// The time limit of one RPC call (the RPC clients, and the gem's RPC
    /// server, which keeps the client's deadline; embedded calls have none).
    ///
    /// anycable-go 1.6 bounds each request by `rpc_request_timeout` (0: no
    /// limit; HTTP RPC: `http_rpc_timeout`, else `rpc_request_timeout`, else
    /// 3000 ms) and the whole call, retries included, by
    /// `rpc_command_timeout` (3000 ms); checked against anycable-go 1.6
    /// rpc/rpc.go and rpc/config.go. Here one deadline covers the call: the
    /// smaller of the two (with both 0, a day).
    pub fn rpc_call_timeout(&self) -> Duration {
        let request = match self.rpc_transport() {
            RpcTransport::Http => [self.http_rpc_timeout, self.rpc_request_timeout, 3000]
                .into_iter()
                .find(|t| *t > 0)
                .unwrap_or(3000),
            RpcTransport::Grpc => self.rpc_request_timeout,
        };
        let limit = [self.rpc_command_timeout, request]
            .into_iter()
            .filter(|t| *t > 0)
            .min()
            .unwrap_or(24 * 3600 * 1000);
        Duration::from_millis(limit)
    }

    /// The Bearer token of HTTP RPC calls, anycable-go's resolution:
    /// `http_rpc_secret`, else one derived from `secret`
    /// ([`crate::broadcast::key::derive_rpc_secret`]); `"none"` or nothing:
    /// no token.
    pub fn effective_http_rpc_secret(&self) -> Option<String> {
        let set = |v: &Option<String>| v.clone().filter(|v| !v.is_empty());
        if let Some(explicit) = set(&self.http_rpc_secret) {
            return (explicit != crate::broadcast::key::NONE).then_some(explicit);
        }
        set(&self.secret)
            .filter(|s| s != crate::broadcast::key::NONE)
            .map(|s| crate::broadcast::key::derive_rpc_secret(&s))
    }

    pub fn has_adapter(&self, adapter: BroadcastAdapter) -> bool {
        self.broadcast_adapter.contains(&adapter)
    }

    /// Where HTTP broadcasts are served, if they are: anycable-go's rule.
    /// With a key, on the main port unless `http_broadcast_port` names
    /// another; without one, never on the main port (8090 by default;
    /// [`Config::validate`] refuses a keyless endpoint on the main port).
    pub fn http_broadcast_listener(&self) -> Option<BroadcastListener> {
        if !self.has_adapter(BroadcastAdapter::Http) {
            return None;
        }
        let keyed = self.effective_broadcast_key().is_some();
        Some(match self.http_broadcast_port {
            0 if keyed => BroadcastListener::Main,
            0 => BroadcastListener::Port(KEYLESS_BROADCAST_PORT),
            port if keyed && port == self.port => BroadcastListener::Main,
            port => BroadcastListener::Port(port),
        })
    }

    /// The key JWT tokens are verified with: `jwt_secret`, else `secret`
    /// (anycable-go's fallback); `"none"` or nothing: no JWT identification.
    pub fn jwt_key(&self) -> Option<String> {
        fallback(&[&self.jwt_secret, &self.secret])
    }

    /// The key signed stream names are verified with: `streams_secret`,
    /// else `secret`; `"none"` or nothing: signed streams are rejected.
    pub fn streams_key(&self) -> Option<String> {
        fallback(&[&self.streams_secret, &self.secret])
    }

    /// The key Turbo stream names are verified with, when `turbo_streams`
    /// is on: turbo-rails' binary key (the gem's `turbo_streams_key_hex`),
    /// else `turbo_streams_secret`, else the streams key (anycable-go's
    /// `GetTurboSecret`).
    pub fn turbo_key(&self) -> Option<Vec<u8>> {
        if let Some(hex) = self
            .turbo_streams_key_hex
            .as_deref()
            .filter(|h| !h.is_empty())
        {
            return hex::decode(hex).ok();
        }
        fallback(&[
            &self.turbo_streams_secret,
            &self.streams_secret,
            &self.secret,
        ])
        .map(String::into_bytes)
    }

    /// The key the HTTP broadcast endpoint requires: anycable-go's
    /// resolution ([`crate::broadcast::key::resolve`]), or none.
    pub fn effective_broadcast_key(&self) -> Option<String> {
        crate::broadcast::key::resolve(
            self.http_broadcast_secret.as_deref(),
            self.broadcast_key.as_deref(),
            self.secret.as_deref(),
        )
    }
}

/// The first option set (not empty); `None` when that one is `"none"`.
fn fallback(options: &[&Option<String>]) -> Option<String> {
    let first = options
        .iter()
        .find_map(|o| o.as_deref().filter(|v| !v.is_empty()))?;
    (first != crate::broadcast::key::NONE).then(|| first.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_parse_with_anycable_names() {
        let cfg = Config::load([
            "ferrocable",
            "--port=9999",
            "--rpc_host=127.0.0.1:5000",
            "--headers=cookie,x-api-key",
            "--broadcast_adapter=redis,http",
            "--log_format=json",
        ])
        .unwrap();
        assert_eq!(cfg.port, 9999);
        assert_eq!(cfg.rpc_host, "127.0.0.1:5000");
        assert_eq!(cfg.headers, vec!["cookie", "x-api-key"]);
        assert!(cfg.has_adapter(BroadcastAdapter::Http));
        assert_eq!(cfg.log_format, LogFormat::Json);
    }

    #[test]
    fn out_of_range_values_are_refused_at_start() {
        for arg in [
            "--rpc_request_timeout=18446744073709551615",
            "--rpc_command_timeout=18446744073709551615",
            "--ping_interval=18446744073709551615",
            "--shutdown_timeout=18446744073709551615",
            "--rpc_concurrency=18446744073709551615",
            "--disconnect_backlog=18446744073709551615",
            "--write_buffer_size=18446744073709551615",
            "--max_message_size=0",
            "--max_session_state_size=0",
        ] {
            let e = Config::load(["ferrocable", arg]).unwrap_err();
            assert_eq!(e.kind(), clap::error::ErrorKind::ValueValidation, "{arg}");
            assert!(e.to_string().contains("must be between"), "{arg}: {e}");
        }
        assert!(Config::load(["ferrocable", "--shutdown_timeout=0"]).is_ok());
        assert!(Config::load(["ferrocable", "--ws_max_pending_size=0"]).is_ok());
    }

    #[test]
    fn rpc_timeouts_as_anycable_go_bounds_a_call() {
        let ms = |args: &[&str]| {
            let args = std::iter::once("ferrocable").chain(args.iter().copied());
            Config::load(args).unwrap().rpc_call_timeout().as_millis()
        };
        // Defaults: no request limit, 3 s for the call.
        assert_eq!(ms(&[]), 3000);
        // The smaller bounds the call: a larger request timeout alone does
        // not lift the command timeout (as in anycable-go).
        assert_eq!(ms(&["--rpc_request_timeout=10000"]), 3000);
        assert_eq!(ms(&["--rpc_request_timeout=500"]), 500);
        assert_eq!(ms(&["--rpc_command_timeout=10000"]), 10000);
        assert_eq!(ms(&["--rpc_command_timeout=0"]), 24 * 3600 * 1000);
        // HTTP RPC: a request is bounded by 3 s when nothing else is set.
        let http = "--rpc_host=http://app/_anycable";
        assert_eq!(ms(&[http, "--rpc_command_timeout=0"]), 3000);
        assert_eq!(
            ms(&[http, "--rpc_command_timeout=0", "--http_rpc_timeout=700"]),
            700
        );
        assert_eq!(
            ms(&[
                http,
                "--rpc_command_timeout=9000",
                "--rpc_request_timeout=5000"
            ]),
            5000
        );
        let cfg = Config::load(["ferrocable", "--rpc_command_timeout=4000"]).unwrap();
        assert!(!cfg.warnings.join(" ").contains("rpc_command_timeout"));
    }

    #[test]
    fn bad_values_are_clap_errors() {
        assert!(Config::load(["ferrocable", "--port=notanumber"]).is_err());
        assert!(Config::load(["ferrocable", "--broadcast_adapter=carrier_pigeon"]).is_err());
        assert!(Config::load(["ferrocable", "--rpc_concurrency=0"]).is_err());
        assert!(Config::load(["ferrocable", "--no-such-flag"]).is_err());
    }

    #[test]
    fn config_file_fills_defaults_and_flags_win() {
        let dir = std::env::temp_dir().join(format!("ferrocable-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("ferrocable.toml");
        std::fs::write(
            &file,
            "port = 7001\nrpc_host = \"10.0.0.1:50051\"\nheaders = [\"cookie\", \"origin\"]\n",
        )
        .unwrap();
        let cfg = Config::load([
            "ferrocable",
            &format!("--config-path={}", file.display()),
            "--port=7002",
        ])
        .unwrap();
        assert_eq!(cfg.port, 7002);
        assert_eq!(cfg.rpc_host, "10.0.0.1:50051");
        assert_eq!(cfg.headers, vec!["cookie", "origin"]);
        std::fs::write(&file, "no_such_option = 1\n").unwrap();
        assert!(
            Config::load(["ferrocable", &format!("--config-path={}", file.display())]).is_err()
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn defaults_match_the_flag_definitions() {
        // defaults() is the flag definitions' defaults (the test environment
        // sets no ANYCABLE_* variables, so plain parsing gives the same).
        assert_eq!(
            Config::try_parse_from(["ferrocable"]).unwrap(),
            Config::defaults()
        );
    }

    #[test]
    fn a_keyless_broadcast_endpoint_gets_a_port_of_its_own() {
        let mut cfg = Config::load(["ferrocable", "--broadcast_adapter=http"]).unwrap();
        assert_eq!(
            cfg.http_broadcast_listener(),
            Some(BroadcastListener::Port(8090))
        );
        cfg.secret = Some("s3cret".into());
        assert_eq!(cfg.http_broadcast_listener(), Some(BroadcastListener::Main));
        cfg.http_broadcast_port = 9000;
        assert_eq!(
            cfg.http_broadcast_listener(),
            Some(BroadcastListener::Port(9000))
        );
        cfg.broadcast_adapter = vec![BroadcastAdapter::Redis];
        assert_eq!(cfg.http_broadcast_listener(), None);
        // Keyless on the WebSocket port: refused at start, with the way out.
        for args in [
            &[
                "ferrocable",
                "--broadcast_adapter=http",
                "--http_broadcast_port=8080",
            ][..],
            &["ferrocable", "--broadcast_adapter=http", "--port=8090"][..],
        ] {
            let e = Config::load(args.iter().copied()).unwrap_err().to_string();
            assert!(e.contains("broadcast_key"), "{e}");
        }
        assert!(
            Config::load([
                "ferrocable",
                "--broadcast_adapter=http",
                "--http_broadcast_port=8080",
                "--broadcast_key=k"
            ])
            .is_ok()
        );
    }

    #[test]
    fn broadcast_key_is_explicit_or_derived() {
        let mut cfg = Config::defaults();
        assert_eq!(cfg.effective_broadcast_key(), None);
        cfg.secret = Some("s3cret".into());
        let derived = cfg.effective_broadcast_key().unwrap();
        assert_eq!(derived.len(), 64);
        cfg.broadcast_key = Some("explicit".into());
        assert_eq!(cfg.effective_broadcast_key().as_deref(), Some("explicit"));
    }

    #[test]
    fn go_forms_and_both_spellings_parse() {
        let cfg = Config::load([
            "ferrocable",
            "-port=9001",
            "-rpc_host",
            "127.0.0.1:5000",
            "--health_path=/up",
            "--max-conn",
            "7",
            "-debug",
            "--disconnect_backlog=10",
        ])
        .unwrap();
        assert_eq!(cfg.port, 9001);
        assert_eq!(cfg.rpc_host, "127.0.0.1:5000");
        assert_eq!(cfg.health_path, "/up");
        assert_eq!(cfg.max_conn, 7);
        assert_eq!(cfg.log_level, LogLevel::Debug);
        assert_eq!(cfg.disconnect_backlog, 10);
        let cfg = Config::load(["ferrocable", "--health-path", "/h", "--debug=false"]).unwrap();
        assert_eq!(cfg.health_path, "/h");
        assert_eq!(cfg.log_level, LogLevel::Info);
    }

    #[test]
    fn unimplemented_options_warn_and_security_ones_refuse() {
        assert!(
            Config::load([
                "ferrocable",
                "--rpc_host=http://app:50051",
                "--rpc_impl=grpc"
            ])
            .is_ok()
        );
        let cfg = Config::load([
            "ferrocable",
            "--presets=none",
            "--broker=memory",
            "-sse",
            "--pusher_app_key=abc",
            "--embed_nats",
            "--broadcast_adapter=redisx,nats,http",
            "--secret=s",
            "--disable_disconnect",
            "--rpc_impl=grpc",
            "--jwt_secret=none",
        ])
        .unwrap();
        let warnings = cfg.warnings.join("\n");
        for name in ["sse", "pusher_app_key", "embed_nats", "disable_disconnect"] {
            assert!(warnings.contains(name), "{name}: {warnings}");
        }
        assert!(!warnings.contains("rpc_impl") && !warnings.contains("jwt_secret"));
        assert!(!warnings.contains("redisx") && !warnings.contains("broadcast_adapter"));
        assert_eq!(cfg.disconnect_mode, DisconnectMode::Never);
        for arg in [
            "--cable_ready_secret=x",
            "--pusher_secret=x",
            "--ssl_cert=/c.pem",
            "--enforce_jwt",
            "--rpc_impl=http",
            "--rpc_impl=carrier_pigeon",
        ] {
            let e = Config::load(["ferrocable", arg]).unwrap_err();
            assert_eq!(e.kind(), clap::error::ErrorKind::ValueValidation, "{arg}");
            let name = arg.trim_start_matches('-').split('=').next().unwrap();
            assert!(e.to_string().contains(name), "{arg}: {e}");
        }
    }

    #[test]
    fn http_rpc_is_inferred_from_the_host_and_its_token_from_secret() {
        let cfg = Config::load(["ferrocable", "--rpc_host=http://app:3000/_anycable"]).unwrap();
        assert_eq!(cfg.rpc_transport(), RpcTransport::Http);
        assert_eq!(cfg.effective_http_rpc_secret(), None);
        let cfg = Config::load([
            "ferrocable",
            "--rpc_host=http://app:3000/_anycable",
            "--rpc_impl=grpc",
        ])
        .unwrap();
        assert_eq!(cfg.rpc_transport(), RpcTransport::Grpc);
        let cfg = Config::load(["ferrocable", "--rpc_host=app:50051"]).unwrap();
        assert_eq!(cfg.rpc_transport(), RpcTransport::Grpc);
        assert_eq!(cfg.rpc_call_timeout(), Duration::from_millis(3000));
        let cfg = Config::load([
            "ferrocable",
            "--rpc_impl=http",
            "--rpc_host=http://app/_anycable",
            "--secret=s3cret",
            "--http_rpc_timeout=500",
        ])
        .unwrap();
        assert_eq!(
            cfg.effective_http_rpc_secret().unwrap(),
            crate::broadcast::key::derive_rpc_secret("s3cret")
        );
        assert_eq!(cfg.rpc_call_timeout(), Duration::from_millis(500));
        assert!(cfg.warnings.join(" ").contains("http_rpc_timeout"));
        let explicit = |v: &str| {
            Config::load([
                "ferrocable",
                "--secret=s",
                &format!("--http_rpc_secret={v}"),
            ])
            .unwrap()
            .effective_http_rpc_secret()
        };
        assert_eq!(explicit("t").as_deref(), Some("t"));
        assert_eq!(explicit("none"), None);
    }

    #[test]
    fn the_legacy_broadcast_secret_is_the_key() {
        let cfg = Config::load([
            "ferrocable",
            "--http_broadcast_secret=old",
            "--broadcast_key=new",
        ])
        .unwrap();
        assert_eq!(cfg.effective_broadcast_key().as_deref(), Some("old"));
        assert!(cfg.warnings.join(" ").contains("http_broadcast_secret"));
        let cfg = Config::load(["ferrocable", "--broadcast_key=none", "--secret=s"]).unwrap();
        assert_eq!(cfg.effective_broadcast_key(), None);
    }

    #[test]
    fn operations_options_as_anycable_go_has_them() {
        let cfg = Config::load(["ferrocable"]).unwrap();
        assert_eq!(cfg.shutdown_delay(), Duration::ZERO);
        assert_eq!(cfg.ws_write_timeout(), Duration::from_secs(2));
        assert_eq!(cfg.metrics_rotate_interval(), Duration::from_secs(15));
        assert!(!cfg.metrics_log && cfg.metrics_tags().unwrap().is_empty());
        assert!(cfg.statsd().is_none());
        let statsd = Config::load(["ferrocable", "--statsd_host=h:8125", "--metrics_tags=a:b"])
            .unwrap()
            .statsd()
            .unwrap();
        assert_eq!(statsd.prefix, "anycable_go.");
        assert_eq!(statsd.max_packet_size, 1400);
        assert_eq!(statsd.tags_format, crate::metrics::TagsFormat::Datadog);
        assert_eq!(statsd.tags, vec![("a".to_owned(), "b".to_owned())]);
        let cfg = Config::load([
            "ferrocable",
            "-shutdown_delay=5",
            "--ws_write_timeout",
            "7",
            "--metrics_log",
            "--metrics_rotate_interval=0",
            "--metrics_log_interval=3",
            "--metrics_tags=env:prod, region:eu-1",
        ])
        .unwrap();
        assert_eq!(cfg.shutdown_delay(), Duration::from_secs(5));
        assert_eq!(cfg.ws_write_timeout(), Duration::from_secs(7));
        assert_eq!(cfg.metrics_rotate_interval(), Duration::from_secs(3));
        assert!(cfg.metrics_log);
        assert_eq!(
            cfg.metrics_tags().unwrap(),
            vec![
                ("env".to_owned(), "prod".to_owned()),
                ("region".to_owned(), "eu-1".to_owned())
            ]
        );
        let warnings = cfg.warnings.join("\n");
        assert!(
            warnings.contains("metrics_log_interval is deprecated"),
            "{warnings}"
        );
        for name in [
            "shutdown_delay",
            "ws_write_timeout",
            "metrics_tags",
            "metrics_log ",
        ] {
            assert!(!warnings.contains(name), "{name}: {warnings}");
        }
        for (arg, needle) in [
            ("--ws_write_timeout=0", "ws_write_timeout"),
            ("--statsd_tags_format=xml", "statsd_tags_format"),
            (
                "--statsd_host=h:8125 --statsd_max_packet_size=10",
                "statsd_max_packet_size",
            ),
            (
                "--redisx_read_block_milliseconds=0",
                "redisx_read_block_milliseconds",
            ),
            ("--metrics_tags=env", "key:value"),
            ("--metrics_tags=a-b:c", "label name"),
            ("--metrics_tags=env:\"x", "quotes"),
        ] {
            let args = std::iter::once("ferrocable").chain(arg.split(' '));
            let e = Config::load(args).unwrap_err().to_string();
            assert!(e.contains(needle), "{arg}: {e}");
        }
    }

    #[test]
    fn http_broadcasts_that_reach_one_node_are_warned() {
        let load = |args: &[&str]| {
            let cfg =
                Config::load(std::iter::once("ferrocable").chain(args.iter().copied())).unwrap();
            cfg.warnings.join("\n")
        };
        let alone = load(&["--broadcast_adapter=http", "--broadcast_key=k"]);
        assert!(
            alone.contains("reaches this node's clients only"),
            "{alone}"
        );
        assert!(!load(&["--broadcast_key=k"]).contains("this node's clients only"));
        let unsigned = load(&[
            "--broadcast_adapter=http",
            "--pubsub=redis",
            "--http_broadcast_port=8090",
        ]);
        assert!(unsigned.contains("not signed"), "{unsigned}");
        let signed = load(&["--broadcast_adapter=http", "--pubsub=redis", "--secret=s"]);
        assert!(!signed.contains("not signed") && !signed.contains("clients only"));
        // Redis pub/sub broadcasts take anything from Redis already.
        assert!(!load(&["--broadcast_adapter=http,redis"]).contains("not signed"));
        // The gem (broadcast_adapter=http by default) says it only as one
        // of several processes (a Puma cluster worker, at its start).
        let gem = Config::load_for_gem(["ferrocable", "--pubsub=none"], 4).unwrap();
        assert!(!gem.warnings.join(" ").contains("clients only"));
        assert!(gem.one_node_broadcasts_warning().is_some());
    }

    #[test]
    fn pubsub_follows_the_transports_unless_set() {
        let load = |args: &[&str]| {
            Config::load(std::iter::once("ferrocable").chain(args.iter().copied())).unwrap()
        };
        let only_http = load(&["--broadcast_adapter=http"]);
        assert_eq!(only_http.pubsub(), PubsubAdapter::None);
        assert!(only_http.pubsub_transport().is_none());
        let redis_broker = load(&["--broadcast_adapter=http", "--broker=redis"]);
        assert_eq!(redis_broker.pubsub(), PubsubAdapter::Redis);
        assert_eq!(
            load(&["--broadcast_adapter=redis"]).pubsub(),
            PubsubAdapter::Redis
        );
        assert_eq!(
            load(&["--broadcast_adapter=nats"]).pubsub(),
            PubsubAdapter::Nats
        );
        let none = load(&["--broadcast_adapter=redisx", "--pubsub=none"]);
        assert_eq!(none.pubsub(), PubsubAdapter::None);
        assert!(!load(&["--streams_presence=false"]).streams_presence);
        assert!(load(&[]).streams_presence);
    }

    #[test]
    fn anycable_toml_sections_are_read() {
        let dir = std::env::temp_dir().join(format!("ferrocable-toml-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("anycable.toml");
        let path = format!("--config-path={}", file.display());
        std::fs::write(
            &file,
            "secret = \"s\"\nbroadcast_adapters = [\"http\", \"redis\"]\npresets = [\"broker\"]\n\
             [server]\nport = 7003\nhealth_path = \"/up\"\n[logging]\nlevel = \"debug\"\n\
             [rpc]\nhost = \"10.0.0.2:50051\"\nproxy_headers = [\"cookie\", \"x-api-key\"]\n\
             [redis]\nurl = \"redis://r:6379\"\nmax_reconnect_attempts = 3\n\
             [http_broadcast]\npath = \"/b\"\n[metrics]\nhttp_path = \"/metrics\"\n[metrics.tags]\nenv = \"prod\"\n\
             [disconnector]\nbacklog = 9\n[sse]\nenabled = true\n",
        )
        .unwrap();
        let cfg = Config::load(["ferrocable", &path]).unwrap();
        assert_eq!(cfg.port, 7003);
        assert_eq!(cfg.health_path, "/up");
        assert_eq!(cfg.log_level, LogLevel::Debug);
        assert_eq!(cfg.rpc_host, "10.0.0.2:50051");
        assert_eq!(cfg.headers, vec!["cookie", "x-api-key"]);
        assert_eq!(cfg.redis_url, "redis://r:6379");
        assert_eq!(cfg.http_broadcast_path, "/b");
        assert_eq!(cfg.metrics_http, "/metrics");
        assert_eq!(cfg.disconnect_backlog, 9);
        assert!(cfg.has_adapter(BroadcastAdapter::Http));
        assert!(cfg.effective_broadcast_key().is_some());
        let warnings = cfg.warnings.join("\n");
        for name in ["max_reconnect_attempts", "sse"] {
            assert!(warnings.contains(name), "{name}: {warnings}");
        }
        // The broker preset's pubsub=redis is served (the bus between nodes).
        assert_eq!(cfg.pubsub(), PubsubAdapter::Redis);
        // The broker preset fills in only what the file left unset.
        assert_eq!(cfg.presets_applied, ["broker"]);
        assert_eq!(cfg.broker, Some(BrokerAdapter::Memory));
        assert_eq!(
            cfg.broadcast_adapter,
            [BroadcastAdapter::Http, BroadcastAdapter::Redis]
        );
        assert_eq!(
            cfg.metrics_tags().unwrap(),
            vec![("env".to_owned(), "prod".to_owned())]
        );
        assert!(
            Config::load(["ferrocable", &path, "--ignore-config-path"])
                .unwrap()
                .port
                == 8080
        );
        std::fs::write(&file, "[pusher]\nsecret = \"x\"\n").unwrap();
        let e = Config::load(["ferrocable", &path]).unwrap_err().to_string();
        assert!(e.contains("pusher_secret"), "{e}");
        std::fs::write(&file, "[jwt]\nsecret = \"x\"\nforce = true\n").unwrap();
        let cfg = Config::load(["ferrocable", &path]).unwrap();
        assert!(cfg.enforce_jwt && cfg.jwt_key().as_deref() == Some("x"));
        std::fs::write(&file, "[server]\nno_such_key = 1\n").unwrap();
        let e = Config::load(["ferrocable", &path]).unwrap_err().to_string();
        assert!(e.contains("no_such_key"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn ssl_cert_and_key_go_together_and_empty_means_unset() {
        let cfg = Config::load(["ferrocable", "--ssl_cert=/c.pem", "--ssl_key=/k.pem"]).unwrap();
        assert!(cfg.tls());
        assert!(
            cfg.http_broadcast_url()
                .is_none_or(|u| u.starts_with("https://"))
        );
        let cfg = Config::load(["ferrocable", "--ssl_cert=", "--ssl_key="]).unwrap();
        assert!(!cfg.tls() && cfg.ssl_cert.is_none());
        let e = Config::load(["ferrocable", "--ssl_key=/k.pem"]).unwrap_err();
        assert!(e.to_string().contains("without ssl_cert"), "{e}");
    }

    #[test]
    fn rpc_tls_as_anycable_go_turns_it_on_and_unverified_is_warned() {
        let cfg = Config::load(["ferrocable"]).unwrap();
        assert_eq!(cfg.rpc_tls(), None);
        let cfg = Config::load(["ferrocable", "--rpc_tls_root_ca=/ca.pem"]).unwrap();
        let tls = cfg.rpc_tls().expect("a root CA turns TLS on");
        assert!(tls.verify && tls.ca.as_deref() == Some("/ca.pem"));
        assert!(cfg.warnings.is_empty(), "{:?}", cfg.warnings);
        let cfg =
            Config::load(["ferrocable", "--rpc_enable_tls", "--rpc_tls_verify=false"]).unwrap();
        assert!(!cfg.rpc_tls().unwrap().verify);
        assert!(cfg.warnings.join(" ").contains("rpc_tls_verify is false"));
        // HTTP RPC: the scheme decides, as in anycable-go.
        let https = Config::load(["ferrocable", "--rpc_host=https://app/_anycable"]).unwrap();
        let tls = https.rpc_client_tls().expect("https:// is TLS");
        assert!(tls.verify && tls.ca.is_none());
        let plain = Config::load([
            "ferrocable",
            "--rpc_host=http://app/_anycable",
            "--rpc_enable_tls",
        ])
        .unwrap();
        assert_eq!(plain.rpc_client_tls(), None);
        assert!(plain.warnings.join(" ").contains("use an https:// URL"));
    }

    #[test]
    fn the_gem_warns_about_secrets_of_missing_features_the_binary_refuses() {
        let args = ["ferrocable", "--pusher_secret=s", "--cable_ready_secret=k"];
        assert!(Config::load_layered(args, Files::Named, &[]).is_err());
        let cfg = Config::load_for_gem(args, 3).unwrap();
        assert!(
            cfg.warnings.iter().any(|w| w.contains("pusher_secret")),
            "{:?}",
            cfg.warnings
        );
        // Enforced JWT without a key: refused in the gem too.
        assert!(Config::load_for_gem(["ferrocable", "--enforce_jwt"], 3).is_err());
    }

    #[test]
    fn fast_lane_keys_fall_back_to_secret_as_in_anycable_go() {
        let cfg = Config::load(["ferrocable"]).unwrap();
        assert_eq!(
            (cfg.jwt_key(), cfg.streams_key(), cfg.turbo_key()),
            (None, None, None)
        );
        let cfg = Config::load(["ferrocable", "--secret=s"]).unwrap();
        assert_eq!(cfg.jwt_key().as_deref(), Some("s"));
        assert_eq!(cfg.streams_key().as_deref(), Some("s"));
        assert_eq!(cfg.turbo_key().as_deref(), Some(&b"s"[..]));
        let cfg = Config::load([
            "ferrocable",
            "--secret=s",
            "--jwt_secret=none",
            "--streams_secret=st",
        ])
        .unwrap();
        assert_eq!(cfg.jwt_key(), None);
        assert_eq!(cfg.streams_key().as_deref(), Some("st"));
        assert_eq!(cfg.turbo_key().as_deref(), Some(&b"st"[..]));
        let hex = format!("--turbo_streams_key_hex={}", "00ff".repeat(16));
        let cfg = Config::load(["ferrocable", "--turbo_streams_secret=t", &hex]).unwrap();
        assert_eq!(cfg.turbo_key(), Some([0u8, 0xff].repeat(16)));
        assert!(Config::load(["ferrocable", "--turbo_streams_key_hex=zz"]).is_err());
        // Without a key, enforcing tokens or Turbo streams is refused.
        for arg in ["--enforce_jwt", "--turbo_streams", "--jwt_id_enforce"] {
            let e = Config::load(["ferrocable", arg]).unwrap_err().to_string();
            assert!(e.contains("needs a key"), "{arg}: {e}");
        }
    }

    #[test]
    fn deprecated_fast_lane_names_apply_with_a_warning() {
        let cfg = Config::load([
            "ferrocable",
            "--jwt_id_key=k",
            "--jwt_id_param=token",
            "--jwt_id_enforce",
            "--turbo_rails_key=t",
        ])
        .unwrap();
        assert_eq!(cfg.jwt_key().as_deref(), Some("k"));
        assert_eq!(cfg.jwt_param, "token");
        assert!(cfg.enforce_jwt && cfg.turbo_streams);
        assert_eq!(cfg.turbo_key().as_deref(), Some(&b"t"[..]));
        let warnings = cfg.warnings.join("\n");
        for name in [
            "jwt_id_key",
            "jwt_id_param",
            "jwt_id_enforce",
            "turbo_rails_key",
        ] {
            assert!(warnings.contains(name), "{name}: {warnings}");
        }
        // jwt_secret wins over jwt_id_key, as in anycable-go.
        let cfg = Config::load(["ferrocable", "--jwt_secret=new", "--jwt_id_key=old"]).unwrap();
        assert_eq!(cfg.jwt_key().as_deref(), Some("new"));
        // Applied once: the flags that load it again say the new names.
        let again = Config::load(cfg.to_args()).unwrap();
        assert_eq!(again.jwt_key().as_deref(), Some("new"));
        assert!(again.warnings.is_empty(), "{:?}", again.warnings);
    }

    #[test]
    fn to_args_loads_the_same_configuration_again() {
        let cfg = Config::load_layered(
            [
                "ferrocable",
                "--headers=cookie,x-api-key",
                "--secret=s",
                "--presets=broker",
                "--debug",
                "--allowed_origins=a.com,b.com",
            ],
            Files::Named,
            &Config::gem_defaults(3),
        )
        .unwrap();
        assert_eq!(cfg.rpc_concurrency, 3);
        assert_eq!(cfg.broadcast_adapter, vec![BroadcastAdapter::Http]);
        let mut again =
            Config::load(std::iter::once("ferrocable".to_owned()).chain(cfg.to_args())).unwrap();
        assert!(again.ignore_config_path);
        again.ignore_config_path = false;
        assert_eq!(again, cfg);
        let summary = cfg.resolution();
        assert_eq!(
            summary["effective_broadcast_key"],
            crate::broadcast::key::derive("s")
        );
        assert_eq!(
            summary["http_broadcast_url"],
            "http://localhost:8080/_broadcast"
        );
        assert_eq!(summary["broadcast_adapter"][0], "http");
    }

    #[test]
    fn print_config_output_loads_back() {
        let cfg = Config::load([
            "ferrocable",
            "--port=9010",
            "--headers=cookie,x-a",
            "--presets=broker",
            "--secret=s",
        ])
        .unwrap();
        let dir = std::env::temp_dir().join(format!("ferrocable-print-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("printed.toml");
        std::fs::write(&file, cfg.to_toml()).unwrap();
        let mut again = Config::load([
            "ferrocable".to_owned(),
            format!("--config-path={}", file.display()),
        ])
        .unwrap();
        again.config_path = None;
        assert_eq!(again, cfg);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
