//! Configuration: one type for every mode, with anycable-go's names.
//!
//! Each option is a flag (`--rpc_host`), an environment variable
//! (`ANYCABLE_RPC_HOST`), or a key in a TOML file (`rpc_host = "..."`, file
//! given by `--config-path` / `ANYCABLE_CONFIG_PATH`). Precedence: flag, then
//! environment, then file, then the default. `PORT` and `REDIS_URL` are
//! honoured when the `ANYCABLE_` variable is not set, as anycable-go does.

use clap::{Parser, ValueEnum};
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DisconnectMode {
    /// Call Disconnect for every session that connected successfully.
    Auto,
    /// Same as auto (kept for anycable-go compatibility).
    Always,
    /// Never call Disconnect.
    Never,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BroadcastAdapter {
    /// Redis pub/sub on `redis_channel`.
    Redis,
    /// HTTP POST to `http_broadcast_path`.
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

#[derive(Debug, Clone, PartialEq, Eq, Parser)]
#[command(
    name = "ferrocable",
    version,
    about = "Ferrocable: an Action Cable server with a Rust core, a drop-in replacement for anycable-go",
    long_about = "Ferrocable serves Action Cable clients (@rails/actioncable, @anycable/web) over WebSocket and \
                  calls your application through the AnyCable RPC contract (gRPC). Broadcasts arrive over Redis \
                  pub/sub or HTTP. Every option is also an ANYCABLE_* environment variable and a key in the \
                  TOML file given by --config-path.",
    max_term_width = 100
)]
pub struct Config {
    /// TOML file with options (same names as the flags, without dashes)
    #[arg(
        long = "config-path",
        env = "ANYCABLE_CONFIG_PATH",
        value_name = "FILE"
    )]
    pub config_path: Option<PathBuf>,

    /// Address to listen on
    #[arg(long, env = "ANYCABLE_HOST", default_value = "localhost")]
    pub host: String,

    /// Port to listen on (also PORT)
    #[arg(long, env = "ANYCABLE_PORT", default_value_t = 8080)]
    pub port: u16,

    /// WebSocket endpoint path(s), comma separated
    #[arg(
        long,
        env = "ANYCABLE_PATH",
        default_value = "/cable",
        value_delimiter = ','
    )]
    pub path: Vec<String>,

    /// Health check endpoint path
    #[arg(
        long = "health_path",
        env = "ANYCABLE_HEALTH_PATH",
        default_value = "/health"
    )]
    pub health_path: String,

    /// RPC server address (host:port, or a http:// URL)
    #[arg(
        long = "rpc_host",
        env = "ANYCABLE_RPC_HOST",
        default_value = "localhost:50051"
    )]
    pub rpc_host: String,

    /// Maximum number of concurrent RPC calls
    #[arg(
        long = "rpc_concurrency",
        env = "ANYCABLE_RPC_CONCURRENCY",
        default_value_t = 28
    )]
    pub rpc_concurrency: usize,

    /// Time limit for one RPC call, in milliseconds
    #[arg(
        long = "rpc_request_timeout",
        env = "ANYCABLE_RPC_REQUEST_TIMEOUT",
        default_value_t = 3000
    )]
    pub rpc_request_timeout: u64,

    /// Request headers passed to the application, comma separated
    #[arg(
        long,
        env = "ANYCABLE_HEADERS",
        default_value = "cookie",
        value_delimiter = ','
    )]
    pub headers: Vec<String>,

    /// Broadcast transports to listen on, comma separated
    #[arg(
        long = "broadcast_adapter",
        env = "ANYCABLE_BROADCAST_ADAPTER",
        default_value = "redis",
        value_delimiter = ','
    )]
    pub broadcast_adapter: Vec<BroadcastAdapter>,

    /// Redis URL for pub/sub broadcasts (also REDIS_URL)
    #[arg(
        long = "redis_url",
        env = "ANYCABLE_REDIS_URL",
        default_value = "redis://localhost:6379"
    )]
    pub redis_url: String,

    /// Redis channel for broadcasts
    #[arg(
        long = "redis_channel",
        env = "ANYCABLE_REDIS_CHANNEL",
        default_value = "__anycable__"
    )]
    pub redis_channel: String,

    /// HTTP broadcast endpoint path
    #[arg(
        long = "http_broadcast_path",
        env = "ANYCABLE_HTTP_BROADCAST_PATH",
        default_value = "/_broadcast"
    )]
    pub http_broadcast_path: String,

    /// Port of the HTTP broadcast endpoint; 0: the main port when a key is set (broadcast_key or secret), else 8090 (on `host`), as anycable-go: a keyless endpoint never shares the WebSocket port
    #[arg(
        long = "http_broadcast_port",
        env = "ANYCABLE_HTTP_BROADCAST_PORT",
        default_value_t = 0
    )]
    pub http_broadcast_port: u16,

    /// Key required as `Authorization: Bearer <key>` by the HTTP broadcast endpoint
    #[arg(
        long = "broadcast_key",
        env = "ANYCABLE_BROADCAST_KEY",
        hide_env_values = true
    )]
    pub broadcast_key: Option<String>,

    /// Application secret; derives the broadcast key when broadcast_key is not set
    #[arg(long, env = "ANYCABLE_SECRET", hide_env_values = true)]
    pub secret: Option<String>,

    /// Seconds between server pings
    #[arg(
        long = "ping_interval",
        env = "ANYCABLE_PING_INTERVAL",
        default_value_t = 3
    )]
    pub ping_interval: u64,

    /// Maximum size of a client message in bytes (larger closes with 1009)
    #[arg(
        long = "max_message_size",
        env = "ANYCABLE_MAX_MESSAGE_SIZE",
        default_value_t = 65536
    )]
    pub max_message_size: usize,

    /// Bytes waiting for one client (queued frames and unsent control replies) before it is disconnected as too_slow; 0: no limit for data frames (control replies keep 1 MiB)
    #[arg(
        long = "ws_max_pending_size",
        env = "ANYCABLE_WS_MAX_PENDING_SIZE",
        default_value_t = 1048576
    )]
    pub ws_max_pending_size: usize,

    /// Socket read buffer per connection, bytes (grows for larger messages)
    #[arg(
        long = "read_buffer_size",
        env = "ANYCABLE_READ_BUFFER_SIZE",
        default_value_t = 1024
    )]
    pub read_buffer_size: usize,

    /// Bytes of outgoing frames batched before a write is forced
    #[arg(
        long = "write_buffer_size",
        env = "ANYCABLE_WRITE_BUFFER_SIZE",
        default_value_t = 1024
    )]
    pub write_buffer_size: usize,

    /// Hosts whose pages may connect (the Origin header), comma separated, port included as in anycable-go: example.com, localhost:3000, *.example.com (subdomains, not example.com itself); when set, a handshake without Origin is refused; empty allows all
    #[arg(
        long = "allowed_origins",
        env = "ANYCABLE_ALLOWED_ORIGINS",
        value_delimiter = ','
    )]
    pub allowed_origins: Vec<String>,

    /// Seconds to wait for clients to be disconnected and Disconnect calls to finish on shutdown
    #[arg(
        long = "shutdown_timeout",
        env = "ANYCABLE_SHUTDOWN_TIMEOUT",
        default_value_t = 30
    )]
    pub shutdown_timeout: u64,

    /// When to call Disconnect for closed sessions
    #[arg(
        long = "disconnect_mode",
        env = "ANYCABLE_DISCONNECT_MODE",
        value_enum,
        default_value = "auto"
    )]
    pub disconnect_mode: DisconnectMode,

    /// Disconnect calls started per second at most, as in anycable-go (0: no limit); they also use at most a quarter of rpc_concurrency, and neither limit applies during shutdown
    #[arg(
        long = "disconnect_rate",
        env = "ANYCABLE_DISCONNECT_RATE",
        default_value_t = 100
    )]
    pub disconnect_rate: u32,

    /// Disconnect calls that may wait in the queue before sessions wait to enqueue theirs
    #[arg(
        long = "disconnect_backlog",
        env = "ANYCABLE_DISCONNECT_BACKLOG",
        default_value_t = 4096
    )]
    pub disconnect_backlog: usize,

    /// Embedded: an application call still running after this many milliseconds is logged and counted (ferrocable_slow_calls); it is never cut short
    #[arg(
        long = "slow_call_threshold",
        env = "ANYCABLE_SLOW_CALL_THRESHOLD",
        default_value_t = 5000
    )]
    pub slow_call_threshold: u64,

    /// Path for Prometheus metrics (e.g. /metrics); empty disables them
    #[arg(
        long = "metrics_http",
        env = "ANYCABLE_METRICS_HTTP",
        default_value = ""
    )]
    pub metrics_http: String,

    /// Serve metrics (and health) on this port instead of the main one; 0 keeps them on the main port
    #[arg(
        long = "metrics_port",
        env = "ANYCABLE_METRICS_PORT",
        default_value_t = 0
    )]
    pub metrics_port: u16,

    /// Address of the metrics listener (with metrics_port)
    #[arg(
        long = "metrics_host",
        env = "ANYCABLE_METRICS_HOST",
        default_value = "localhost"
    )]
    pub metrics_host: String,

    /// Most WebSocket connections served at once (0: no limit); more are refused with 503
    #[arg(long = "max_conn", env = "ANYCABLE_MAX_CONN", default_value_t = 0)]
    pub max_conn: usize,

    /// Most subscriptions on one connection; more are rejected
    #[arg(
        long = "max_subscriptions",
        env = "ANYCABLE_MAX_SUBSCRIPTIONS",
        default_value_t = 1000
    )]
    pub max_subscriptions: usize,

    /// Bytes of state one connection may hold (subscription identifiers, their streams and state, connection state); a subscribe over it is rejected, a reply growing the state past it disconnects (invalid_request)
    #[arg(
        long = "max_session_state_size",
        env = "ANYCABLE_MAX_SESSION_STATE_SIZE",
        default_value_t = 524288
    )]
    pub max_session_state_size: usize,

    /// Log level
    #[arg(
        long = "log_level",
        env = "ANYCABLE_LOG_LEVEL",
        value_enum,
        default_value = "info"
    )]
    pub log_level: LogLevel,

    /// Log format
    #[arg(
        long = "log_format",
        env = "ANYCABLE_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub log_format: LogFormat,
}

/// The configuration reference as a Markdown table, made from the flag
/// definitions themselves (README.md carries it; a test keeps them equal).
pub fn markdown_reference() -> String {
    let cmd = <Config as clap::CommandFactory>::command();
    let mut out =
        String::from("| flag | environment | default | meaning |\n| --- | --- | --- | --- |\n");
    for arg in cmd.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if matches!(long, "help" | "version") {
            continue;
        }
        let env = arg
            .get_env()
            .map(|e| format!("`{}`", e.to_string_lossy()))
            .unwrap_or_default();
        let defaults: Vec<String> = arg
            .get_default_values()
            .iter()
            .map(|v| v.to_string_lossy().into_owned())
            .collect();
        let default = match defaults.join(",") {
            d if d.is_empty() => "—".to_owned(),
            d => format!("`{d}`"),
        };
        let mut help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
        let values: Vec<String> = arg
            .get_possible_values()
            .iter()
            .map(|v| format!("`{}`", v.get_name()))
            .collect();
        if !values.is_empty() {
            help.push_str(&format!(" ({})", values.join(", ")));
        }
        out.push_str(&format!(
            "| `--{long}` | {env} | {default} | {} |\n",
            help.replace('|', "\\|")
        ));
    }
    out
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

impl Config {
    /// Every option at its default value (what `--help` shows), ignoring
    /// the environment: the starting point for embedders and tests.
    pub fn defaults() -> Self {
        let cmd = <Config as clap::CommandFactory>::command().mut_args(|a| a.env(None::<&str>));
        let mut matches = cmd
            .try_get_matches_from(["ferrocable"])
            .expect("the defaults parse");
        <Config as clap::FromArgMatches>::from_arg_matches_mut(&mut matches)
            .expect("the defaults parse")
    }

    /// Parses flags, environment and the config file, in that precedence.
    /// Errors are clap errors, so the binary prints them and exits with 2.
    pub fn load<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let args: Vec<OsString> = args.into_iter().map(Into::into).collect();
        let file_values = match config_path_from(&args) {
            Some(path) => read_config_file(&path).map_err(|e| {
                <Config as clap::CommandFactory>::command().error(clap::error::ErrorKind::Io, e.0)
            })?,
            None => Vec::new(),
        };
        // Values from the file become environment-like defaults: a flag or a
        // real environment variable still wins.
        let env_aliases = [
            ("ANYCABLE_PORT", "PORT"),
            ("ANYCABLE_REDIS_URL", "REDIS_URL"),
        ];
        let mut cmd = <Config as clap::CommandFactory>::command();
        for (key, value) in file_values.iter().chain(
            env_aliases
                .iter()
                .filter(|(main, _)| std::env::var_os(main).is_none())
                .filter_map(|(main, alias)| {
                    std::env::var(alias)
                        .ok()
                        .map(|v| (main.trim_start_matches("ANYCABLE_").to_lowercase(), v))
                })
                .collect::<Vec<_>>()
                .iter(),
        ) {
            let env_name = format!("ANYCABLE_{}", key.to_uppercase());
            if std::env::var_os(&env_name).is_some() {
                continue;
            }
            let id = key.clone();
            if !cmd.get_arguments().any(|a| a.get_id() == id.as_str()) {
                return Err(cmd.error(
                    clap::error::ErrorKind::UnknownArgument,
                    format!("unknown option {key:?} in the config file"),
                ));
            }
            let value = value.clone();
            cmd = cmd.mut_arg(id.as_str(), move |a| a.default_value(value));
        }
        let mut matches = cmd.try_get_matches_from(args)?;
        let cfg = <Config as clap::FromArgMatches>::from_arg_matches_mut(&mut matches)?;
        cfg.validate().map_err(|e| {
            <Config as clap::CommandFactory>::command()
                .error(clap::error::ErrorKind::ValueValidation, e.0)
        })?;
        Ok(cfg)
    }

    /// Checks ranges and combinations that single values cannot express.
    /// Out-of-range values are refused here, at start, with the range: an
    /// absurd one (a timeout of 2^64 ms) used to surface as a panic in the
    /// first session that used it.
    pub fn validate(&self) -> Result<(), ConfigError> {
        const DAY_S: u64 = 24 * 3600;
        const GIB: u64 = 1 << 30;
        let ranges: [(&str, u64, u64, u64, &str); 11] = [
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
                1,
                DAY_S * 1000,
                " ms",
            ),
            ("ping_interval", self.ping_interval, 1, DAY_S, " s"),
            ("shutdown_timeout", self.shutdown_timeout, 0, DAY_S, " s"),
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
        if !self.metrics_http.is_empty() && !self.metrics_http.starts_with('/') {
            return Err(ConfigError(format!(
                "metrics_http {:?} must start with '/'",
                self.metrics_http
            )));
        }
        Ok(())
    }

    pub fn ping_interval(&self) -> Duration {
        Duration::from_secs(self.ping_interval)
    }

    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_secs(self.shutdown_timeout)
    }

    pub fn slow_call_threshold(&self) -> Duration {
        Duration::from_millis(self.slow_call_threshold)
    }

    pub fn rpc_request_timeout(&self) -> Duration {
        Duration::from_millis(self.rpc_request_timeout)
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

    /// The key the HTTP broadcast endpoint requires: `broadcast_key`, or one
    /// derived from `secret` (HMAC-SHA256 of "broadcast-cable", hex, as
    /// AnyCable derives it), or none when neither is set.
    pub fn effective_broadcast_key(&self) -> Option<String> {
        use hmac::{Hmac, Mac};
        if let Some(key) = self.broadcast_key.as_ref().filter(|k| !k.is_empty()) {
            return Some(key.clone());
        }
        let secret = self.secret.as_ref().filter(|s| !s.is_empty())?;
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes())
            .expect("HMAC takes any key length");
        mac.update(b"broadcast-cable");
        Some(hex::encode(mac.finalize().into_bytes()))
    }
}

fn config_path_from(args: &[OsString]) -> Option<PathBuf> {
    let mut iter = args.iter().skip(1);
    while let Some(arg) = iter.next() {
        let s = arg.to_string_lossy();
        if let Some(v) = s.strip_prefix("--config-path=") {
            return Some(PathBuf::from(v));
        }
        if s == "--config-path" {
            return iter.next().map(PathBuf::from);
        }
    }
    std::env::var_os("ANYCABLE_CONFIG_PATH").map(PathBuf::from)
}

/// Reads a flat TOML table into (option, value-as-text) pairs.
fn read_config_file(path: &std::path::Path) -> Result<Vec<(String, String)>, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError(format!("cannot read config file {}: {e}", path.display())))?;
    let table: toml::Table = toml::from_str(&text)
        .map_err(|e| ConfigError(format!("invalid config file {}: {e}", path.display())))?;
    table
        .into_iter()
        .map(|(key, value)| {
            let text = match value {
                toml::Value::String(s) => s,
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                toml::Value::Array(items) => items
                    .into_iter()
                    .map(|v| match v {
                        toml::Value::String(s) => Ok(s),
                        other => Ok(other.to_string()),
                    })
                    .collect::<Result<Vec<_>, ConfigError>>()?
                    .join(","),
                other => {
                    return Err(ConfigError(format!(
                        "config file {}: option {key:?} has an unsupported value {other}",
                        path.display()
                    )));
                }
            };
            Ok((key.replace('-', "_"), text))
        })
        .collect()
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
            "--rpc_request_timeout=0",
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
}
