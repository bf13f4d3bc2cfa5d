//! anycable-go's vocabulary beyond what ferrocable implements: every other
//! option of anycable-go 1.6 (OSS), its TOML sections, and the command-line
//! forms Go programs accept. A deployment written for anycable-go starts
//! unchanged: an option we do not implement yet is accepted with a warning
//! naming it, and one whose silent omission would weaken security (a secret)
//! or cannot work is refused at start.

use std::collections::HashMap;
use std::ffi::OsString;

/// What setting an option we do not implement does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Accepted; a warning says the feature is not implemented yet.
    Warn(&'static str),
    /// Deprecated in anycable-go (no effect there either); a warning says so.
    Deprecated(&'static str),
    /// Refused at start: ignoring it would weaken security or cannot work.
    Refuse(&'static str),
}

impl Policy {
    pub fn is_refused(self) -> bool {
        matches!(self, Policy::Refuse(_))
    }
}

/// One anycable-go option ferrocable accepts without implementing it.
#[derive(Debug, Clone, Copy)]
pub struct Foreign {
    /// The flag name, spelled as anycable-go spells it.
    pub name: &'static str,
    /// A boolean flag (`--sse`, `--sse=false`) rather than one with a value.
    pub flag: bool,
    /// A value that means "off" (anycable-go's default): setting it is quiet.
    pub inert: &'static str,
    pub policy: Policy,
}

impl Foreign {
    /// A secret or key of a feature not implemented yet (`jwt_secret`, ...).
    pub fn is_secret(&self) -> bool {
        self.policy == SECRET
    }
}

const fn opt(name: &'static str, inert: &'static str, policy: Policy) -> Foreign {
    Foreign {
        name,
        flag: false,
        inert,
        policy,
    }
}

const fn flag(name: &'static str, policy: Policy) -> Foreign {
    Foreign {
        name,
        flag: true,
        inert: "false",
        policy,
    }
}

use Policy::{Deprecated, Refuse, Warn};

const SECRET: Policy = Refuse("a secret for a feature ferrocable does not implement yet");
const ENATS: Policy = Warn("embedded NATS is not implemented yet");
const STREAMS: Policy = Warn("presence and CableReady streams are not implemented yet");
const METRICS: Policy = Warn("custom metrics log formatters are not implemented yet");
const PUSHER: Policy = Warn("the Pusher protocol is not implemented yet");
const TUNING: Policy = Warn("anycable-go tuning knob without an equivalent here");

/// Every anycable-go 1.6 option that ferrocable does not implement.
pub const OPTIONS: &[Foreign] = &[
    flag(
        "public",
        Warn(
            "public mode is not implemented: connections are authenticated and broadcasts keyed as usual",
        ),
    ),
    flag(
        "noauth",
        Warn("noauth is not implemented: connections are authenticated as usual"),
    ),
    opt("shutdown_pool_size", "16", TUNING),
    opt(
        "node_id",
        "",
        Warn("node identifiers are not implemented yet"),
    ),
    opt("hub_gopool_size", "16", TUNING),
    opt(
        "redis_sentinels",
        "",
        Refuse(
            "Redis Sentinel is not implemented yet: broadcasts would be read from redis_url instead",
        ),
    ),
    opt("redis_sentinel_discovery_interval", "30", TUNING),
    opt("redis_keepalive_interval", "30", TUNING),
    flag("redis_disable_cache", TUNING),
    flag(
        "http_broadcast_cors",
        Warn("CORS headers on the broadcast endpoint are not implemented yet"),
    ),
    flag("embed_nats", ENATS),
    opt("enats_addr", "", ENATS),
    opt("enats_cluster", "", ENATS),
    opt("enats_cluster_name", "", ENATS),
    opt("enats_cluster_routes", "", ENATS),
    opt("enats_gateway", "", ENATS),
    opt("enats_gateways", "", ENATS),
    opt("enats_gateway_advertise", "", ENATS),
    opt("enats_store_dir", "", ENATS),
    opt("enats_server_name", "", ENATS),
    flag("enats_debug", ENATS),
    flag("enats_trace", ENATS),
    opt("enats_max_payload", "0", ENATS),
    flag(
        "norpc",
        Warn(
            "standalone mode without RPC is not implemented: connections still call the application",
        ),
    ),
    opt("rpc_max_call_recv_size", "", TUNING),
    opt("rpc_max_call_send_size", "", TUNING),
    opt(
        "proxy-cookies",
        "",
        Warn("cookie filtering is not implemented yet: the whole Cookie header is passed"),
    ),
    opt(
        "disconnect_timeout",
        "0",
        Deprecated(
            "disconnect_timeout is deprecated in anycable-go and has no effect; use shutdown_timeout",
        ),
    ),
    opt("metrics_log_formatter", "", METRICS),
    opt("stats_refresh_interval", "5", TUNING),
    flag(
        "enable_ws_compression",
        Warn("WebSocket compression is not implemented yet"),
    ),
    flag(
        "enable_native_pings",
        Warn("native WebSocket pings are not implemented yet"),
    ),
    flag("cable_ready", STREAMS),
    flag(
        "turbo_rails_cleartext",
        Deprecated("turbo_rails_cleartext is deprecated in anycable-go and has no effect"),
    ),
    opt("cable_ready_key", "", SECRET),
    opt("cable_ready_secret", "", SECRET),
    flag(
        "cable_ready_cleartext",
        Deprecated("cable_ready_cleartext is deprecated in anycable-go and has no effect"),
    ),
    opt("pusher_app_id", "", PUSHER),
    opt("pusher_secret", "", SECRET),
    opt("pusher_app_key", "", PUSHER),
    opt("pusher_api_port", "0", PUSHER),
    flag("sse", Warn("Server-Sent Events are not implemented yet")),
    opt(
        "sse_path",
        "/events",
        Warn("Server-Sent Events are not implemented yet"),
    ),
    flag("ds", Warn("Durable Streams are not implemented yet")),
    opt(
        "ds_path",
        "/ds",
        Warn("Durable Streams are not implemented yet"),
    ),
    flag(
        "ds_skip_auth",
        Warn("Durable Streams are not implemented yet"),
    ),
    opt(
        "ds_poll_interval",
        "10",
        Warn("Durable Streams are not implemented yet"),
    ),
    opt(
        "ds_sse_ttl",
        "60",
        Warn("Durable Streams are not implemented yet"),
    ),
    opt(
        "api_port",
        "0",
        Warn("the API server is not implemented yet"),
    ),
    opt(
        "api_path",
        "/api",
        Warn("the API server is not implemented yet"),
    ),
    opt("api_secret", "", SECRET),
];

pub fn find(name: &str) -> Option<&'static Foreign> {
    OPTIONS.iter().find(|o| o.name == name)
}

/// What setting `value` for `option` means at start: nothing (off or
/// anycable-go's default), a warning, or an error.
pub fn check(option: &Foreign, value: &str) -> Result<Option<String>, String> {
    let value = value.trim();
    if value.is_empty() || value == option.inert || value.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    if option.flag
        && matches!(
            value.to_ascii_lowercase().as_str(),
            "false" | "0" | "f" | "no"
        )
    {
        return Ok(None);
    }
    match option.policy {
        Policy::Warn(why) => Ok(Some(format!(
            "option {} is accepted for anycable-go compatibility but has no effect: {why}",
            option.name
        ))),
        Policy::Deprecated(why) => Ok(Some(format!("option {}: {why}", option.name))),
        Policy::Refuse(why) => Err(format!(
            "option {} is set but not supported ({why}); refusing to start rather than ignore it. \
             Unset it (or set it to \"none\") to run ferrocable",
            option.name
        )),
    }
}

/// anycable-go's TOML file: `(section, key)` → the flag it stands for.
/// Top-level keys (section "") not listed here are flag names themselves,
/// ferrocable's flat form (`port = 8080`). `None`: a key anycable-go reads
/// that has no flag; accepted with a warning.
pub const FILE_KEYS: &[(&str, &str, Option<&str>)] = &[
    ("", "node_id", Some("node_id")),
    ("", "broadcast_adapters", Some("broadcast_adapter")),
    ("", "pubsub_adapter", Some("pubsub")),
    ("server", "host", Some("host")),
    ("server", "port", Some("port")),
    ("server", "allowed_origins", Some("allowed_origins")),
    ("server", "max_conn", Some("max-conn")),
    ("server", "health_path", Some("health-path")),
    ("server.ssl", "cert_path", Some("ssl_cert")),
    ("server.ssl", "key_path", Some("ssl_key")),
    ("logging", "level", Some("log_level")),
    ("logging", "format", Some("log_format")),
    ("logging", "debug", Some("debug")),
    ("app", "disconnect_mode", Some("disconnect_mode")),
    (
        "app",
        "shutdown_disconnect_gopool_size",
        Some("shutdown_pool_size"),
    ),
    ("app", "ping_interval", Some("ping_interval")),
    (
        "app",
        "stats_refresh_interval",
        Some("stats_refresh_interval"),
    ),
    ("app", "broadcast_gopool_size", Some("hub_gopool_size")),
    (
        "app",
        "ping_timestamp_precision",
        Some("ping_timestamp_precision"),
    ),
    ("app", "pong_timeout", Some("pong_timeout")),
    ("app", "enable_native_ping", Some("enable_native_pings")),
    ("app", "shutdown_timeout", Some("shutdown_timeout")),
    ("app", "shutdown_delay", Some("shutdown_delay")),
    ("ws", "paths", Some("path")),
    ("ws", "read_buffer_size", Some("read_buffer_size")),
    ("ws", "write_buffer_size", Some("write_buffer_size")),
    ("ws", "max_message_size", Some("max_message_size")),
    ("ws", "write_timeout", Some("ws_write_timeout")),
    ("ws", "max_pending_size", Some("ws_max_pending_size")),
    ("ws", "enable_compression", Some("enable_ws_compression")),
    ("rpc", "host", Some("rpc_host")),
    ("rpc", "proxy_headers", Some("headers")),
    ("rpc", "proxy_cookies", Some("proxy-cookies")),
    ("rpc", "concurrency", Some("rpc_concurrency")),
    ("rpc", "enable_tls", Some("rpc_enable_tls")),
    ("rpc", "tls_verify", Some("rpc_tls_verify")),
    ("rpc", "tls_root_ca_path", Some("rpc_tls_root_ca")),
    ("rpc", "max_recv_size", Some("rpc_max_call_recv_size")),
    ("rpc", "max_send_size", Some("rpc_max_call_send_size")),
    ("rpc", "implementation", Some("rpc_impl")),
    ("rpc", "secret", Some("http_rpc_secret")),
    ("rpc", "request_timeout", Some("rpc_request_timeout")),
    ("rpc", "command_timeout", Some("rpc_command_timeout")),
    ("rpc", "http_request_timeout", Some("http_rpc_timeout")),
    ("broker", "adapter", Some("broker")),
    ("broker", "history_ttl", Some("history_ttl")),
    ("broker", "history_limit", Some("history_limit")),
    ("broker", "sessions_ttl", Some("sessions_ttl")),
    ("broker", "presence_ttl", Some("presence_ttl")),
    ("redis", "url", Some("redis_url")),
    ("redis", "sentinels", Some("redis_sentinels")),
    (
        "redis",
        "sentinel_discovery_interval",
        Some("redis_sentinel_discovery_interval"),
    ),
    (
        "redis",
        "keepalive_ping_interval",
        Some("redis_keepalive_interval"),
    ),
    ("redis", "tls_verify", Some("redis_tls_verify")),
    ("redis", "tls_ca_cert_path", Some("redis_tls_ca_cert_path")),
    (
        "redis",
        "tls_client_cert_path",
        Some("redis_tls_client_cert_path"),
    ),
    (
        "redis",
        "tls_client_key_path",
        Some("redis_tls_client_key_path"),
    ),
    ("redis", "max_reconnect_attempts", None),
    ("redis", "disable_cache", Some("redis_disable_cache")),
    ("redis_pubsub_broadcast", "channel", Some("redis_channel")),
    ("redis_stream_broadcast", "stream", Some("redisx_stream")),
    ("redis_stream_broadcast", "group", Some("redisx_group")),
    (
        "redis_stream_broadcast",
        "stream_read_block_milliseconds",
        Some("redisx_read_block_milliseconds"),
    ),
    ("nats_broadcast", "channel", Some("nats_channel")),
    ("http_broadcast", "port", Some("http_broadcast_port")),
    ("http_broadcast", "path", Some("http_broadcast_path")),
    ("http_broadcast", "secret", Some("http_broadcast_secret")),
    (
        "http_broadcast",
        "cors_headers",
        Some("http_broadcast_cors"),
    ),
    ("http_broadcast", "cors_hosts", None),
    ("redis_pubsub", "channel", None),
    ("nats_pubsub", "channel", None),
    ("nats", "servers", Some("nats_servers")),
    (
        "nats",
        "dont_randomize_servers",
        Some("nats_dont_randomize_servers"),
    ),
    ("nats", "max_reconnect_attempts", None),
    ("disconnector", "rate", Some("disconnect_rate")),
    ("disconnector", "backlog", Some("disconnect_backlog_size")),
    (
        "disconnector",
        "shutdown_timeout",
        Some("disconnect_timeout"),
    ),
    ("metrics", "log", Some("metrics_log")),
    (
        "metrics",
        "rotate_interval",
        Some("metrics_rotate_interval"),
    ),
    ("metrics", "log_filter", Some("metrics_log_filter")),
    ("metrics", "http_path", Some("metrics_http")),
    ("metrics", "host", Some("metrics_host")),
    ("metrics", "port", Some("metrics_port")),
    ("metrics", "tags", Some("metrics_tags")),
    ("metrics.statsd", "host", Some("statsd_host")),
    ("metrics.statsd", "prefix", Some("statsd_prefix")),
    ("metrics.statsd", "tags_format", Some("statsd_tags_format")),
    (
        "metrics.statsd",
        "max_packet_size",
        Some("statsd_max_packet_size"),
    ),
    ("jwt", "secret", Some("jwt_secret")),
    ("jwt", "param", Some("jwt_param")),
    ("jwt", "force", Some("enforce_jwt")),
    ("embedded_nats", "enabled", Some("embed_nats")),
    ("embedded_nats", "debug", Some("enats_debug")),
    ("embedded_nats", "trace", Some("enats_trace")),
    ("embedded_nats", "name", Some("enats_server_name")),
    ("embedded_nats", "service_addr", Some("enats_addr")),
    ("embedded_nats", "cluster_addr", Some("enats_cluster")),
    ("embedded_nats", "cluster_name", Some("enats_cluster_name")),
    ("embedded_nats", "gateway_addr", Some("enats_gateway")),
    (
        "embedded_nats",
        "gateway_advertise",
        Some("enats_gateway_advertise"),
    ),
    ("embedded_nats", "gateways", Some("enats_gateways")),
    ("embedded_nats", "routes", Some("enats_cluster_routes")),
    ("embedded_nats", "jetstream", None),
    (
        "embedded_nats",
        "jetstream_store_dir",
        Some("enats_store_dir"),
    ),
    ("embedded_nats", "jetstream_ready_timeout", None),
    ("embedded_nats", "max_payload", Some("enats_max_payload")),
    ("sse", "enabled", Some("sse")),
    ("sse", "path", Some("sse_path")),
    ("streams", "secret", Some("streams_secret")),
    ("streams", "public", Some("public_streams")),
    ("streams", "whisper", Some("streams_whisper")),
    ("streams", "presence", Some("streams_presence")),
    ("streams", "pubsub_channel", None),
    ("streams", "turbo", Some("turbo_streams")),
    ("streams", "turbo_secret", Some("turbo_streams_secret")),
    ("streams", "cable_ready", Some("cable_ready")),
    ("streams", "cable_ready_secret", Some("cable_ready_secret")),
    ("pusher", "app_id", Some("pusher_app_id")),
    ("pusher", "app_key", Some("pusher_app_key")),
    ("pusher", "secret", Some("pusher_secret")),
    ("pusher", "api_port", Some("pusher_api_port")),
    ("ds", "enabled", Some("ds")),
    ("ds", "path", Some("ds_path")),
    ("ds", "skip_auth", Some("ds_skip_auth")),
    ("ds", "poll_interval", Some("ds_poll_interval")),
    ("ds", "sse_ttl", Some("ds_sse_ttl")),
    ("api", "host", None),
    ("api", "port", Some("api_port")),
    ("api", "path", Some("api_path")),
    ("api", "secret", Some("api_secret")),
    ("api", "cors_headers", None),
    ("api", "cors_hosts", None),
];

/// The sections of anycable-go's file (a table there, not an option).
pub fn is_section(name: &str) -> bool {
    FILE_KEYS
        .iter()
        .any(|(s, _, _)| *s == name || s.starts_with(&format!("{name}.")))
}

/// The flag a file key stands for: `Some(Some(flag))`, `Some(None)` for a
/// key anycable-go reads that has no flag, `None` for a key anycable-go
/// does not know either.
pub fn file_key(section: &str, key: &str) -> Option<Option<&'static str>> {
    FILE_KEYS
        .iter()
        .find(|(s, k, _)| *s == section && *k == key)
        .map(|(_, _, flag)| *flag)
}

/// `-flag`, `--flag value`, `--flag=value`, with `-` and `_` alike: the
/// forms anycable-go accepts, rewritten to the spelling clap knows. `names`
/// maps each spelling (dashes as underscores) to the flag's long name.
pub fn normalize_args(args: Vec<OsString>, names: &HashMap<String, String>) -> Vec<OsString> {
    let mut out = Vec::with_capacity(args.len());
    let mut rest = false;
    for (i, arg) in args.into_iter().enumerate() {
        let text = arg.to_string_lossy();
        if i == 0 || rest || !text.starts_with('-') || text == "-" {
            out.push(arg);
            continue;
        }
        if text == "--" {
            rest = true;
            out.push(arg);
            continue;
        }
        let bare = text.strip_prefix("--").unwrap_or(&text[1..]);
        let (name, value) = match bare.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (bare, None),
        };
        match names.get(&name.replace('-', "_")) {
            Some(long) if name.len() > 1 => out.push(OsString::from(match value {
                Some(v) => format!("--{long}={v}"),
                None => format!("--{long}"),
            })),
            _ => out.push(arg),
        }
    }
    out
}
