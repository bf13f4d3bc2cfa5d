//! Server metrics, exported in the Prometheus text format at `metrics_http`.
//!
//! The counters are plain atomics (prometheus-client), cheap enough to bump on
//! the hot path; the registry only matters when `/metrics` is scraped.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Default)]
pub struct Metrics {
    registry: Registry,
    pub clients: Gauge,
    pub streams: Gauge,
    pub connections: Counter,
    pub broadcasts: Counter,
    pub broadcast_errors: Counter,
    pub client_messages: Counter,
    pub client_message_failures: Counter,
    pub rpc_calls: Counter,
    pub rpc_errors: Counter,
    pub rpc_retries: Counter,
    pub rpc_pending: Gauge,
    pub disconnect_queue: Gauge,
    pub bytes_in: Counter,
    pub bytes_out: Counter,
    pub slow_client_disconnects: Counter,
    pub rejected_handshakes: Counter,
    pub slow_calls: Counter,
    pub broadcast_auth_failures: Counter,
    pub session_panics: Counter,
}

impl Metrics {
    pub fn new() -> Self {
        let mut m = Metrics {
            registry: Registry::with_prefix("ferrocable"),
            ..Default::default()
        };
        let r = &mut m.registry;
        r.register("clients", "Connected WebSocket clients", m.clients.clone());
        r.register(
            "streams",
            "Streams with at least one subscriber",
            m.streams.clone(),
        );
        r.register(
            "connections",
            "WebSocket connections accepted",
            m.connections.clone(),
        );
        r.register(
            "broadcast_msg",
            "Broadcasts received from all transports",
            m.broadcasts.clone(),
        );
        r.register(
            "broadcast_errors",
            "Publications rejected as malformed",
            m.broadcast_errors.clone(),
        );
        r.register(
            "client_msg",
            "Frames received from clients",
            m.client_messages.clone(),
        );
        r.register(
            "failed_client_msg",
            "Client frames that could not be served (malformed, unknown command, not subscribed)",
            m.client_message_failures.clone(),
        );
        r.register(
            "rpc_call",
            "Application calls made (connect, command, stream callback, disconnect), in every mode",
            m.rpc_calls.clone(),
        );
        r.register(
            "rpc_error",
            "Application calls that failed or returned ERROR",
            m.rpc_errors.clone(),
        );
        r.register(
            "rpc_retries",
            "Application call attempts retried",
            m.rpc_retries.clone(),
        );
        r.register(
            "rpc_pending",
            "Application calls waiting for a concurrency slot",
            m.rpc_pending.clone(),
        );
        r.register(
            "disconnect_queue",
            "Disconnect calls waiting to be made",
            m.disconnect_queue.clone(),
        );
        r.register(
            "data_rcvd_bytes",
            "Bytes received from clients",
            m.bytes_in.clone(),
        );
        r.register(
            "data_sent_bytes",
            "Bytes queued to clients",
            m.bytes_out.clone(),
        );
        r.register(
            "slow_client_disconnects",
            "Clients disconnected because their outgoing queue was full (too_slow)",
            m.slow_client_disconnects.clone(),
        );
        r.register(
            "session_panics",
            "Sessions whose task panicked (each cleaned up and closed with 1011)",
            m.session_panics.clone(),
        );
        r.register(
            "broadcast_auth_failures",
            "HTTP broadcasts refused for a missing or wrong key",
            m.broadcast_auth_failures.clone(),
        );
        r.register(
            "log_lines_suppressed",
            "Log lines about clients left out by the per-site rate limit (every event is still counted in its own metric)",
            crate::client_log::SUPPRESSED.clone(),
        );
        r.register(
            "rejected_handshakes",
            "WebSocket handshakes refused (origin, path, capacity)",
            m.rejected_handshakes.clone(),
        );
        r.register(
            "slow_calls",
            "Application calls still running after the slow-call threshold (embedded: 5 s)",
            m.slow_calls.clone(),
        );
        m
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::new();
        m.clients.set(3);
        m.broadcasts.inc();
        let text = m.render();
        assert!(text.contains("# TYPE ferrocable_clients gauge"), "{text}");
        assert!(text.contains("ferrocable_clients 3"), "{text}");
        assert!(text.contains("ferrocable_broadcast_msg_total 1"), "{text}");
        assert!(text.ends_with("# EOF\n"));
    }
}
