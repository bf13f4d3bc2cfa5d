//! The Redis Streams broadcast subscriber (`broadcast_adapter=redisx`): a
//! publisher adds an entry with a `payload` field to `redisx_stream`
//! (`XADD <stream> * payload <json>`, as AnyCable's Ruby `redisx` adapter
//! does) and every node publishes each entry once.
//!
//! Every node reads the stream in a consumer group of its own
//! (`<redisx_group>-<random>`), so each node gets every entry without a
//! pub/sub between nodes. (anycable-go shares one group among its nodes,
//! `IsFanout() == false`: one node reads each entry and re-broadcasts it
//! over its pub/sub. Here each node reads every entry from Redis itself,
//! its group keeping its place while it is away, where a pub/sub relay
//! would lose what a disconnected node missed: redisx is a fan-out
//! transport, [`Reach::EveryNode`], never passed on over the bus, and the
//! entry id positions it once for the cluster. A group per node also
//! keeps apart from anycable-go nodes reading the same stream.) The
//! group holds the node's position while Redis is away; the node also keeps
//! the last entry it published, so an entry is published once even when
//! its acknowledgement was lost, and a Redis that came back empty (no
//! persistence) gets the group again at that entry, so the entries added
//! since are still read. Entries older than [`RETENTION`] before the newest
//! one read are trimmed (anycable-go deletes each entry once its one reader
//! has it; here every node reads it). A node that stops gracefully removes
//! its group.

use super::redis::RedisTarget;
use super::{Publish, Reach};
use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;
use redis::streams::{StreamId, StreamReadOptions, StreamReadReply};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tracing::{debug, error, info, warn};

const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// Entries read per call.
const BATCH: usize = 100;
/// How long entries stay in the stream after a newer one was read (a node
/// away from Redis longer than this misses the older ones).
pub const RETENTION: Duration = Duration::from_secs(60);
/// Trim at most this often (in stream time).
const TRIM_EVERY_MS: u64 = 1000;

/// Where to read, from the configuration.
#[derive(Debug, Clone)]
pub struct Options {
    /// The Redis server (`redis_url` and the `rediss://` TLS options).
    pub target: RedisTarget,
    pub stream: String,
    /// The prefix of this node's group name.
    pub group: String,
    /// How long one read waits for entries.
    pub block: Duration,
}

/// An entry id (`<milliseconds>-<sequence>`), ordered as Redis orders them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct EntryId(u64, u64);

impl EntryId {
    fn parse(id: &str) -> Option<EntryId> {
        let (ms, seq) = id.split_once('-')?;
        Some(EntryId(ms.parse().ok()?, seq.parse().ok()?))
    }
}

impl std::fmt::Display for EntryId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.0, self.1)
    }
}

/// One node's reader: its group, and how far it has published.
struct Reader {
    options: Options,
    group: String,
    /// The last entry published here.
    published: Option<EntryId>,
    /// Whether the group was made once already: made again (Redis lost it),
    /// it starts at `published`, or at the stream's start.
    made_group: bool,
    trimmed_at: u64,
}

/// Runs until `stop` resolves, then removes this node's group.
pub async fn run(to: Arc<dyn Publish>, options: Options, stop: impl Future<Output = ()>) {
    let client = match options.target.client() {
        Ok(c) => c,
        Err(e) => {
            error!(error = %e, "invalid redis_url; Redis stream broadcasts are disabled");
            return;
        }
    };
    let mut suffix = [0u8; 4];
    getrandom::fill(&mut suffix).expect("the OS gives random bytes");
    let group = format!("{}-{}", options.group, hex::encode(suffix));
    let mut reader = Reader {
        options,
        group,
        published: None,
        made_group: false,
        trimmed_at: 0,
    };
    tokio::select! {
        _ = stop => {}
        _ = reader.read_forever(&*to, &client) => {}
    }
    reader.remove_group(&client).await;
}

impl Reader {
    async fn read_forever(&mut self, to: &dyn Publish, client: &redis::Client) {
        let mut backoff = FIRST_BACKOFF;
        // A read waits up to `block`: the connection must wait longer.
        let config = redis::AsyncConnectionConfig::new()
            .set_response_timeout(Some(self.options.block + Duration::from_secs(5)));
        loop {
            match client
                .get_multiplexed_async_connection_with_config(&config)
                .await
            {
                Ok(mut conn) => {
                    let error = self.read(to, &mut conn, &mut backoff).await;
                    warn!(error = %error, stream = %self.options.stream, "Redis stream connection lost; reconnecting");
                }
                Err(e) => warn!(
                    error = %e,
                    retry_in_ms = backoff.as_millis() as u64,
                    "cannot connect to Redis (redisx); retrying"
                ),
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Reads until the connection fails; returns why.
    async fn read(
        &mut self,
        to: &dyn Publish,
        conn: &mut MultiplexedConnection,
        backoff: &mut Duration,
    ) -> redis::RedisError {
        if let Err(e) = self.make_group(conn).await {
            return e;
        }
        info!(stream = %self.options.stream, group = %self.group, "reading Redis stream broadcasts");
        *backoff = FIRST_BACKOFF;
        // First what was delivered here but not acknowledged (the
        // connection broke in between), then new entries.
        let mut from = "0";
        loop {
            let mut options = StreamReadOptions::default()
                .group(&self.group, &self.group)
                .count(BATCH);
            if from == ">" {
                options = options.block(self.options.block.as_millis() as usize);
            }
            let reply: Option<StreamReadReply> = match conn
                .xread_options(&[&self.options.stream], &[from], &options)
                .await
            {
                Ok(reply) => reply,
                // Pending entries Redis cannot give back as entries: go on
                // with new ones rather than fail on them at every reconnect.
                Err(e) if from == "0" && !e.is_io_error() && e.code() != Some("NOGROUP") => {
                    warn!(error = %e, "unreadable pending Redis stream entries skipped");
                    from = ">";
                    continue;
                }
                Err(e) => return e,
            };
            let entries: Vec<StreamId> = reply
                .into_iter()
                .flat_map(|r| r.keys)
                .flat_map(|k| k.ids)
                .collect();
            if entries.is_empty() {
                from = ">";
                continue;
            }
            let ids: Vec<String> = entries.iter().map(|e| e.id.clone()).collect();
            for entry in entries {
                self.publish(to, entry);
            }
            let acked: Result<i64, _> = conn.xack(&self.options.stream, &self.group, &ids).await;
            if let Err(e) = acked {
                return e;
            }
            if let Err(e) = self.trim(conn).await {
                return e;
            }
        }
    }

    /// Makes this node's group unless Redis has it already.
    async fn make_group(&mut self, conn: &mut MultiplexedConnection) -> redis::RedisResult<()> {
        let start = match (self.published, self.made_group) {
            (Some(id), _) => id.to_string(),
            (None, true) => "0".to_owned(),
            (None, false) => "$".to_owned(),
        };
        let made: redis::RedisResult<()> = conn
            .xgroup_create_mkstream(&self.options.stream, &self.group, &start)
            .await;
        match made {
            Ok(()) => {
                if self.made_group {
                    info!(group = %self.group, from = %start, "Redis had lost this node's stream group: made again");
                }
                self.made_group = true;
                Ok(())
            }
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Publishes one entry unless it was published here already.
    fn publish(&mut self, to: &dyn Publish, entry: StreamId) {
        let Some(id) = EntryId::parse(&entry.id) else {
            warn!(id = %entry.id, "Redis stream entry with an unreadable id skipped");
            return;
        };
        if self.published.is_some_and(|p| id <= p) {
            debug!(id = %entry.id, "Redis stream entry published already");
            return;
        }
        self.published = Some(id);
        if entry.map.is_empty() {
            // Delivered here earlier, then trimmed before it was read again.
            debug!(id = %entry.id, "Redis stream entry gone before it was read");
            return;
        }
        // The entry id names the publication the same way on every node.
        let key = format!("x:{}:{}", self.options.stream, entry.id);
        match entry.map.get("payload") {
            Some(redis::Value::BulkString(payload)) => {
                let _ = to.publish_payload_from(
                    payload,
                    "redisx",
                    Reach::EveryNode { key: Some(&key) },
                );
            }
            Some(redis::Value::SimpleString(payload)) => {
                let _ = to.publish_payload_from(
                    payload.as_bytes(),
                    "redisx",
                    Reach::EveryNode { key: Some(&key) },
                );
            }
            _ => {
                to.metrics().broadcast_errors.inc();
                warn!(id = %entry.id, "Redis stream entry without a payload field skipped");
            }
        }
    }

    /// Drops the entries older than [`RETENTION`] before the newest read.
    async fn trim(&mut self, conn: &mut MultiplexedConnection) -> redis::RedisResult<()> {
        let Some(EntryId(newest, _)) = self.published else {
            return Ok(());
        };
        if newest < self.trimmed_at + TRIM_EVERY_MS {
            return Ok(());
        }
        self.trimmed_at = newest;
        let min_id = newest.saturating_sub(RETENTION.as_millis() as u64);
        redis::cmd("XTRIM")
            .arg(&self.options.stream)
            .arg("MINID")
            .arg("~")
            .arg(min_id)
            .query_async::<i64>(conn)
            .await
            .map(drop)
    }

    /// A node that stops removes its group (best effort: Redis may be away).
    async fn remove_group(&self, client: &redis::Client) {
        let removed = tokio::time::timeout(Duration::from_secs(2), async {
            let mut conn = client.get_multiplexed_async_connection().await?;
            conn.xgroup_destroy::<_, _, i64>(&self.options.stream, &self.group)
                .await
        })
        .await;
        match removed {
            Ok(Ok(_)) => debug!(group = %self.group, "Redis stream group removed"),
            _ => warn!(group = %self.group, "could not remove this node's Redis stream group"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::EntryId;

    #[test]
    fn entry_ids_order_as_redis_orders_them() {
        let a = EntryId::parse("1700000000000-9").unwrap();
        let b = EntryId::parse("1700000000000-10").unwrap();
        let c = EntryId::parse("1700000000001-0").unwrap();
        assert!(a < b && b < c);
        assert_eq!(b.to_string(), "1700000000000-10");
        assert_eq!(EntryId::parse("nonsense"), None);
        assert_eq!(EntryId::parse("1-x"), None);
    }
}
