//! Server metrics, exported in the Prometheus text format at `metrics_http`.
//!
//! The counters are plain atomics (prometheus-client), cheap enough to bump on
//! the hot path; the registry only matters when `/metrics` is scraped.
//!
//! Every metric anycable-go also has is exported under its anycable-go name
//! too (`anycable_go_clients_num`, `anycable_go_broadcast_msg_total`, ...), so
//! dashboards written for anycable-go keep working: the same counter is
//! registered under both names (one value, counted once). `metrics_tags`
//! become labels on every metric, and [`Metrics::snapshot`] gives what
//! `metrics_log` logs (checked against anycable-go 1.6 metrics/prometheus.go,
//! metrics/printer.go, node/node.go and rpc/rpc.go).

use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

/// anycable-go's namespace for its Prometheus metrics.
pub const ANYCABLE_PREFIX: &str = "anycable_go";

#[derive(Default)]
pub struct Metrics {
    registry: Registry,
    /// The same metrics under anycable-go's names.
    anycable: Registry,
    /// Counter values at the last rotation (`metrics_log`): anycable-go
    /// logs what each counter counted during the interval.
    last: Mutex<BTreeMap<&'static str, u64>>,
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
    pub rpc_capacity: Gauge,
    pub disconnect_queue: Gauge,
    /// Disconnect calls dropped because the backlog was full
    /// (`disconnect_backlog_size`, a stateless application only).
    pub disconnect_dropped: Counter,
    pub bytes_in: Counter,
    pub bytes_out: Counter,
    pub slow_client_disconnects: Counter,
    pub write_timeouts: Counter,
    pub failed_auths: Counter,
    pub rejected_handshakes: Counter,
    pub slow_calls: Counter,
    pub broadcast_auth_failures: Counter,
    pub session_panics: Counter,
    /// Tasks alive in the tokio runtime serving the metrics, read when the
    /// metrics are rendered (the soak benchmark watches it come back).
    pub tokio_tasks: Gauge,
}

/// One metric as anycable-go names it.
enum Value<'a> {
    Counter(&'a Counter),
    Gauge(&'a Gauge),
}

impl Metrics {
    /// Metrics without tags.
    pub fn new() -> Self {
        Self::with_tags(&[])
    }

    /// Metrics whose every sample carries `tags` as labels (`metrics_tags`).
    pub fn with_tags(tags: &[(String, String)]) -> Self {
        let labels = || {
            tags.iter()
                .map(|(k, v)| (Cow::Owned(k.clone()), Cow::Owned(v.clone())))
                .collect::<Vec<_>>()
                .into_iter()
        };
        let mut m = Metrics {
            registry: Registry::with_prefix_and_labels("ferrocable", labels()),
            anycable: Registry::with_prefix_and_labels(ANYCABLE_PREFIX, labels()),
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
            "disconnect_dropped",
            "Disconnect calls dropped: the backlog (disconnect_backlog_size) was full",
            m.disconnect_dropped.clone(),
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
        r.register(
            "write_timeouts",
            "Clients disconnected because a write did not finish within ws_write_timeout",
            m.write_timeouts.clone(),
        );
        r.register(
            "failed_auths",
            "Connections the application rejected (unauthorized)",
            m.failed_auths.clone(),
        );
        r.register(
            "tokio_tasks",
            "Tasks alive in the server's tokio runtime (sessions hold two each), read at each scrape",
            m.tokio_tasks.clone(),
        );
        r.register(
            "rpc_capacity",
            "Application calls allowed at once (rpc_concurrency)",
            m.rpc_capacity.clone(),
        );
        let mut anycable = std::mem::take(&mut m.anycable);
        for (name, value) in m.anycable_names() {
            let help = format!("anycable-go's name for the metric of the same meaning ({name})");
            match value {
                Value::Counter(c) => {
                    let family = name.strip_suffix("_total").expect("counters end in _total");
                    anycable.register(family, help, c.clone());
                }
                Value::Gauge(g) => anycable.register(name, help, g.clone()),
            }
        }
        m.anycable = anycable;
        m
    }

    /// Every metric anycable-go has too, by its anycable-go name (without
    /// the `anycable_go_` namespace, as its log and StatsD writer name them).
    fn anycable_names(&self) -> [(&'static str, Value<'_>); 18] {
        use Value::{Counter as C, Gauge as G};
        [
            ("clients_num", G(&self.clients)),
            ("broadcast_streams_num", G(&self.streams)),
            ("disconnect_queue_size", G(&self.disconnect_queue)),
            ("rpc_pending_num", G(&self.rpc_pending)),
            ("rpc_capacity_num", G(&self.rpc_capacity)),
            ("failed_auths_total", C(&self.failed_auths)),
            ("client_msg_total", C(&self.client_messages)),
            ("failed_client_msg_total", C(&self.client_message_failures)),
            (
                "disconnected_slow_clients_total",
                C(&self.slow_client_disconnects),
            ),
            // A single node (no pub/sub between nodes): every publication
            // is broadcast, and anycable-go counts it under both names.
            ("publications_total", C(&self.broadcasts)),
            ("broadcast_msg_total", C(&self.broadcasts)),
            ("failed_broadcast_msg_total", C(&self.broadcast_errors)),
            ("timeout_server_msg_total", C(&self.write_timeouts)),
            ("data_sent_total", C(&self.bytes_out)),
            ("data_rcvd_total", C(&self.bytes_in)),
            ("rpc_call_total", C(&self.rpc_calls)),
            ("rpc_error_total", C(&self.rpc_errors)),
            ("rpc_retries_total", C(&self.rpc_retries)),
        ]
    }

    /// The Prometheus text exposition of every metric, under both names.
    pub fn render(&self) -> String {
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            self.tokio_tasks
                .set(runtime.metrics().num_alive_tasks() as i64);
        }
        let mut out = String::new();
        encode_registry(&mut out, &self.registry).expect("writing to a String cannot fail");
        encode_registry(&mut out, &self.anycable).expect("writing to a String cannot fail");
        encode_eof(&mut out).expect("writing to a String cannot fail");
        out
    }

    /// What `metrics_log` logs each `metrics_rotate_interval`, as
    /// anycable-go does: anycable-go's names, sorted; a counter's value is
    /// what it counted since the previous snapshot, a gauge's its value.
    /// `filter` (`metrics_log_filter`), when not empty, keeps only the
    /// names it lists.
    pub fn snapshot(&self, filter: &[String]) -> Vec<(&'static str, u64)> {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<(&'static str, u64)> = self
            .anycable_names()
            .into_iter()
            .map(|(name, value)| match value {
                Value::Gauge(g) => (name, g.get().max(0) as u64),
                Value::Counter(c) => {
                    let now = c.get();
                    let before = last.insert(name, now).unwrap_or(0);
                    (name, now.saturating_sub(before))
                }
            })
            .filter(|(name, _)| filter.is_empty() || filter.iter().any(|f| f == name))
            .collect();
        out.sort_by_key(|(name, _)| *name);
        out
    }

    /// Every `interval` (`metrics_rotate_interval`), takes one
    /// [`Metrics::snapshot`] and hands it to the writers, as anycable-go
    /// rotates its metrics once for all of them: the log (`metrics_log`,
    /// at info level, the names of `filter` when not empty) and StatsD.
    /// Runs until the task is dropped.
    pub async fn write_every(
        self: std::sync::Arc<Self>,
        interval: Duration,
        log: Option<Vec<String>>,
        statsd: Option<Statsd>,
    ) {
        if log.is_some() {
            tracing::info!(interval_s = interval.as_secs(), "log metrics");
        }
        let mut statsd = match statsd {
            Some(s) => s.connect().await,
            None => None,
        };
        let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        loop {
            ticks.tick().await;
            let snapshot = self.snapshot(&[]);
            if let Some(filter) = &log {
                let line = snapshot
                    .iter()
                    .filter(|(name, _)| filter.is_empty() || filter.iter().any(|f| f == name))
                    .map(|(name, value)| format!("{name}={value}"))
                    .collect::<Vec<_>>()
                    .join(" ");
                tracing::info!(target: "ferrocable::metrics", "{line}");
            }
            if let Some((statsd, socket)) = &mut statsd {
                for packet in statsd.packets(&snapshot) {
                    if let Err(e) = socket.send(&packet).await {
                        tracing::warn!(host = %statsd.host, error = %e, "cannot send StatsD metrics");
                        break;
                    }
                }
            }
        }
    }
}

/// How StatsD tags are written (`statsd_tags_format`), as anycable-go's
/// StatsD client writes them (checked against smira/go-statsd tags.go).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagsFormat {
    /// `name:1|c|#k:v,k2:v2`
    Datadog,
    /// `name,k=v,k2=v2:1|c`
    Influxdb,
    /// `name;k=v;k2=v2:1|c`
    Graphite,
}

/// The StatsD writer (`statsd_host`): every rotation, the counters' counts
/// of the interval (`|c`, those not zero) and the gauges (`|g`), anycable-go's
/// names after `prefix`, with `metrics_tags`, in UDP packets of at most
/// `max_packet_size` bytes, one metric a line (checked against anycable-go
/// 1.6 metrics/statsd_writer.go and smira/go-statsd client.go).
#[derive(Debug, Clone)]
pub struct Statsd {
    pub host: String,
    pub prefix: String,
    pub tags_format: TagsFormat,
    pub max_packet_size: usize,
    pub tags: Vec<(String, String)>,
}

impl Statsd {
    /// The UDP socket to `host`; logs and gives up (the server runs on)
    /// when the name does not resolve.
    async fn connect(self) -> Option<(Statsd, tokio::net::UdpSocket)> {
        let socket = async {
            let addr = tokio::net::lookup_host(&self.host)
                .await?
                .next()
                .ok_or_else(|| std::io::Error::other("no address"))?;
            let local: std::net::SocketAddr = if addr.is_ipv4() {
                ([0, 0, 0, 0], 0).into()
            } else {
                (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
            };
            let socket = tokio::net::UdpSocket::bind(local).await?;
            socket.connect(addr).await?;
            Ok::<_, std::io::Error>(socket)
        };
        match socket.await {
            Ok(socket) => {
                tracing::info!(host = %self.host, prefix = %self.prefix, "send StatsD metrics");
                Some((self, socket))
            }
            Err(e) => {
                tracing::error!(host = %self.host, error = %e, "cannot send StatsD metrics to statsd_host");
                None
            }
        }
    }

    fn line(&self, name: &str, value: u64, kind: &str) -> String {
        let (sep, first, pair) = match self.tags_format {
            TagsFormat::Datadog => (',', "|#", ':'),
            TagsFormat::Influxdb => (',', ",", '='),
            TagsFormat::Graphite => (';', ";", '='),
        };
        let tags = match self.tags.is_empty() {
            true => String::new(),
            false => {
                let list: Vec<String> = self
                    .tags
                    .iter()
                    .map(|(k, v)| format!("{k}{pair}{v}"))
                    .collect();
                format!("{first}{}", list.join(&sep.to_string()))
            }
        };
        match self.tags_format {
            TagsFormat::Datadog => format!("{}{name}:{value}|{kind}{tags}\n", self.prefix),
            _ => format!("{}{name}{tags}:{value}|{kind}\n", self.prefix),
        }
    }

    /// The packets for one snapshot: a counter (`_total`) as `|c` when it
    /// counted something, a gauge as `|g`.
    pub fn packets(&self, snapshot: &[(&'static str, u64)]) -> Vec<Vec<u8>> {
        let mut packets = Vec::new();
        let mut packet = Vec::new();
        for (name, value) in snapshot {
            let counter = name.ends_with("_total");
            if counter && *value == 0 {
                continue;
            }
            let line = self.line(name, *value, if counter { "c" } else { "g" });
            if !packet.is_empty() && packet.len() + line.len() > self.max_packet_size {
                packets.push(std::mem::take(&mut packet));
            }
            packet.extend_from_slice(line.as_bytes());
        }
        if !packet.is_empty() {
            packets.push(packet);
        }
        packets
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tokio_tasks_are_read_at_each_render() {
        let m = Metrics::new();
        let before = m.render();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(rx);
        let during = m.render();
        tx.send(()).unwrap();
        task.await.unwrap().unwrap();
        let gauge = |text: &str| -> i64 {
            let line = text
                .lines()
                .find(|l| l.starts_with("ferrocable_tokio_tasks "));
            line.and_then(|l| l.split(' ').nth(1))
                .unwrap()
                .parse()
                .unwrap()
        };
        assert_eq!(gauge(&during), gauge(&before) + 1, "{during}");
        assert_eq!(gauge(&m.render()), gauge(&before));
    }

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::new();
        m.clients.set(3);
        m.broadcasts.inc();
        let text = m.render();
        assert!(text.contains("# TYPE ferrocable_clients gauge"), "{text}");
        assert!(text.contains("ferrocable_clients 3"), "{text}");
        assert!(text.contains("ferrocable_broadcast_msg_total 1"), "{text}");
        // No runtime here: the gauge stays at zero.
        assert!(text.contains("ferrocable_tokio_tasks 0"), "{text}");
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn anycable_go_names_share_the_values_and_tags_label_every_sample() {
        let m = Metrics::with_tags(&[("env".into(), "prod".into())]);
        m.clients.set(2);
        m.broadcasts.inc_by(5);
        let text = m.render();
        assert!(
            text.contains("ferrocable_clients{env=\"prod\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("anycable_go_clients_num{env=\"prod\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("anycable_go_broadcast_msg_total{env=\"prod\"} 5"),
            "{text}"
        );
        assert!(
            text.contains("anycable_go_publications_total{env=\"prod\"} 5"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE anycable_go_clients_num gauge"),
            "{text}"
        );
        assert_eq!(text.matches("# EOF").count(), 1, "{text}");
    }

    #[test]
    fn statsd_lines_in_each_tags_format_and_packets_bounded() {
        let mut statsd = Statsd {
            host: String::new(),
            prefix: "anycable_go.".into(),
            tags_format: TagsFormat::Datadog,
            max_packet_size: 1400,
            tags: vec![("env".into(), "prod".into()), ("az".into(), "a".into())],
        };
        let snapshot = [
            ("broadcast_msg_total", 2),
            ("clients_num", 0),
            ("client_msg_total", 0),
        ];
        let text = |s: &Statsd| String::from_utf8(s.packets(&snapshot).concat()).unwrap();
        assert_eq!(
            text(&statsd),
            "anycable_go.broadcast_msg_total:2|c|#env:prod,az:a\nanycable_go.clients_num:0|g|#env:prod,az:a\n"
        );
        statsd.tags_format = TagsFormat::Influxdb;
        assert!(text(&statsd).starts_with("anycable_go.broadcast_msg_total,env=prod,az=a:2|c\n"));
        statsd.tags_format = TagsFormat::Graphite;
        assert!(text(&statsd).starts_with("anycable_go.broadcast_msg_total;env=prod;az=a:2|c\n"));
        statsd.max_packet_size = 60;
        let packets = statsd.packets(&snapshot);
        assert_eq!(packets.len(), 2);
        assert!(packets.iter().all(|p| p.len() <= 60 && p.ends_with(b"\n")));
    }

    #[test]
    fn snapshots_count_the_interval_and_filter() {
        let m = Metrics::new();
        m.broadcasts.inc_by(3);
        m.clients.set(4);
        let first = m.snapshot(&[]);
        assert!(first.contains(&("broadcast_msg_total", 3)), "{first:?}");
        assert!(first.contains(&("clients_num", 4)), "{first:?}");
        assert!(
            first.windows(2).all(|w| w[0].0 < w[1].0),
            "sorted: {first:?}"
        );
        m.broadcasts.inc();
        let filter = vec!["broadcast_msg_total".to_owned(), "clients_num".to_owned()];
        assert_eq!(
            m.snapshot(&filter),
            vec![("broadcast_msg_total", 1), ("clients_num", 4)]
        );
    }
}
