//! `broker=redis`: positions, history and sessions in Redis, so every node
//! of a cluster reports the same positions, any node serves any stream's
//! history and restores any session, and all of it survives a restart.
//!
//! Per stream: a hash `ferrocable:pos:<stream>` (`epoch`, last `offset`),
//! kept ten times `history_ttl` after the last publication (anycable-go's
//! rule for its memory broker), and a Redis stream `ferrocable:hist:<stream>`
//! whose entry ids are `<offset>-0`, fields `d` (data) and `t` (Unix
//! seconds), capped at `history_limit` entries and dropped `history_ttl`
//! after the last publication. A stream whose hash is gone starts a new
//! epoch. Publishing is one Lua script, so concurrent nodes never take the
//! same offset. Sessions are `ferrocable:session:<sid>` with `EX sessions_ttl`;
//! publication keys `ferrocable:key:<key>` with `EX` [`KEY_TTL`].
//!
//! Presence (one Lua script per call, Redis's clock, so every node agrees
//! on deadlines): per stream, hashes `ferrocable:presence:<stream>:p`
//! (sid → id), `:c` (id → its sessions there) and `:i` (id → info JSON);
//! per session, a set `ferrocable:presence:sid:<sid>` of its streams, and
//! one sorted set `ferrocable:presence:deadlines` (sid → deadline, ms) that
//! every node's sweep reads, so a dead node's sessions expire too. The
//! scripts name keys they build from a prefix: one Redis, not a Redis
//! Cluster.
//!
//! Redis away: every call answers [`Unavailable`] within [`CALL_TIMEOUT`];
//! the connection is made again on a later call.

use super::presence::{info_text, info_value};
use super::{
    Broker, Entry, HistoryError, KEY_TTL, Limits, Position, PresenceError, PresenceEvent,
    PresenceInfo, Unavailable,
};
use crate::broadcast::redis::RedisTarget;
use futures_util::future::BoxFuture;
use redis::Value;
use redis::aio::MultiplexedConnection;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// The longest a broker call waits for Redis.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(3);
/// After a failed connection, calls fail at once for this long (a Redis
/// that is down is not dialled for every broadcast).
const RECONNECT_PAUSE: Duration = Duration::from_millis(500);
const PREFIX: &str = "ferrocable:";

const PUBLISH: &str = r"
if ARGV[8] == '1' then
  local seen = redis.call('GET', KEYS[3])
  if seen then return seen end
end
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  epoch = ARGV[6]
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[1], 'epoch', epoch)
end
local offset = redis.call('HINCRBY', KEYS[1], 'offset', 1)
redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[3], offset .. '-0', 'd', ARGV[1], 't', ARGV[2])
redis.call('EXPIRE', KEYS[2], ARGV[4])
redis.call('EXPIRE', KEYS[1], ARGV[5])
local position = epoch .. ':' .. offset
if ARGV[8] == '1' then redis.call('SET', KEYS[3], position, 'EX', ARGV[7]) end
return position
";

/// `{epoch, last, offset1, data1, at1, ...}` from `ARGV[1]` on, or `{}`
/// when the stream has no history.
const READ: &str = r"
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then return {} end
local last = redis.call('HGET', KEYS[1], 'offset') or '0'
local out = {epoch, last}
for _, e in ipairs(redis.call('XRANGE', KEYS[2], ARGV[1], '+')) do
  local id = e[1]
  out[#out + 1] = string.sub(id, 1, string.find(id, '-') - 1)
  out[#out + 1] = e[2][2]
  out[#out + 1] = e[2][4]
end
return out
";

/// Deletes a stored session if it is still the state the restorer read:
/// 1 for the one restorer that took it.
/// KEYS: the session. ARGV: the state read.
const TAKE_SESSION: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
";

/// What the presence scripts share: `remove(sid, stream)` takes a session
/// out of a stream's set and answers the id when it was its last session.
const PRESENCE_LIB: &str = r"
local P = ARGV[1]
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function remove(sid, stream)
  local pk = P .. stream
  local pid = redis.call('HGET', pk .. ':p', sid)
  if not pid then return false end
  redis.call('HDEL', pk .. ':p', sid)
  redis.call('SREM', P .. 'sid:' .. sid, stream)
  local n = redis.call('HINCRBY', pk .. ':c', pid, -1)
  if n > 0 then return false end
  redis.call('HDEL', pk .. ':c', pid)
  redis.call('HDEL', pk .. ':i', pid)
  return pid
end
";

/// ARGV: prefix, stream, sid, pid, info, ttl (ms). -1: another id; 1: a
/// new id (join); 0: known.
const PRESENCE_ADD: &str = r"
local pk = P .. ARGV[2]
local old = redis.call('HGET', pk .. ':p', ARGV[3])
if old and old ~= ARGV[4] then return -1 end
redis.call('ZADD', P .. 'deadlines', now_ms() + tonumber(ARGV[6]), ARGV[3])
redis.call('SADD', P .. 'sid:' .. ARGV[3], ARGV[2])
redis.call('HSET', pk .. ':i', ARGV[4], ARGV[5])
if old then return 0 end
redis.call('HSET', pk .. ':p', ARGV[3], ARGV[4])
if redis.call('HINCRBY', pk .. ':c', ARGV[4], 1) == 1 then return 1 end
return 0
";

/// ARGV: prefix, stream, sid. The id that left, or nil.
const PRESENCE_REMOVE: &str = r"
local pid = remove(ARGV[3], ARGV[2])
if redis.call('SCARD', P .. 'sid:' .. ARGV[3]) == 0 then
  redis.call('ZREM', P .. 'deadlines', ARGV[3])
end
return pid
";

/// ARGV: prefix, sid, ttl (ms).
const PRESENCE_TOUCH: &str = r"
return redis.call('ZADD', P .. 'deadlines', 'XX', now_ms() + tonumber(ARGV[3]), ARGV[2])
";

/// ARGV: prefix, at most this many sessions. `{stream1, id1, ...}`.
const PRESENCE_EXPIRE: &str = r"
local out = {}
local due = redis.call('ZRANGEBYSCORE', P .. 'deadlines', '-inf', now_ms(), 'LIMIT', 0, ARGV[2])
for _, sid in ipairs(due) do
  for _, stream in ipairs(redis.call('SMEMBERS', P .. 'sid:' .. sid)) do
    local pid = remove(sid, stream)
    if pid then
      out[#out + 1] = stream
      out[#out + 1] = pid
    end
  end
  redis.call('DEL', P .. 'sid:' .. sid)
  redis.call('ZREM', P .. 'deadlines', sid)
end
return out
";

/// Sessions one expiry call handles at most (a later sweep takes the rest).
const EXPIRE_BATCH: usize = 1000;

fn presence_script(body: &str) -> redis::Cmd {
    let mut cmd = redis::cmd("EVAL");
    cmd.arg(format!("{PRESENCE_LIB}{body}"))
        .arg(0)
        .arg(format!("{PREFIX}presence:"));
    cmd
}

fn value_text(v: &Value) -> String {
    match v {
        Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
        Value::SimpleString(s) => s.clone(),
        Value::Int(i) => i.to_string(),
        _ => String::new(),
    }
}

pub struct Redis {
    client: redis::Client,
    limits: Limits,
    connection: Mutex<Connection>,
    describe: String,
}

#[derive(Default)]
struct Connection {
    live: Option<MultiplexedConnection>,
    failed_at: Option<Instant>,
}

impl Redis {
    /// A broker on `target`; connects on first use.
    pub fn new(target: &RedisTarget, limits: Limits) -> Result<Self, String> {
        Ok(Redis {
            client: target.client()?,
            limits,
            connection: Mutex::new(Connection::default()),
            describe: format!(
                "redis broker at {} (history limit: {}, history ttl: {}s, sessions ttl: {}s, presence ttl: {}s)",
                redact(&target.url),
                limits.history_limit,
                limits.history_ttl.as_secs(),
                limits.sessions_ttl.as_secs(),
                limits.presence_ttl.as_secs()
            ),
        })
    }

    async fn connection(&self) -> Result<MultiplexedConnection, Unavailable> {
        let mut c = self.connection.lock().await;
        if let Some(live) = &c.live {
            return Ok(live.clone());
        }
        if c.failed_at.is_some_and(|t| t.elapsed() < RECONNECT_PAUSE) {
            return Err(Unavailable("Redis unreachable (retrying shortly)".into()));
        }
        match tokio::time::timeout(CALL_TIMEOUT, self.client.get_multiplexed_async_connection())
            .await
        {
            Ok(Ok(live)) => {
                c.live = Some(live.clone());
                c.failed_at = None;
                Ok(live)
            }
            Ok(Err(e)) => {
                c.failed_at = Some(Instant::now());
                Err(Unavailable(e.to_string()))
            }
            Err(_) => {
                c.failed_at = Some(Instant::now());
                Err(Unavailable("Redis connection timed out".into()))
            }
        }
    }

    /// Runs one command; a failure drops the connection (made again later).
    async fn run(&self, cmd: redis::Cmd) -> Result<Value, Unavailable> {
        let mut live = self.connection().await?;
        let result = tokio::time::timeout(CALL_TIMEOUT, cmd.query_async::<Value>(&mut live)).await;
        let error = match result {
            Ok(Ok(value)) => return Ok(value),
            // Redis answered with an error: the connection is fine.
            Ok(Err(e)) if !(e.is_io_error() || e.is_connection_dropped() || e.is_timeout()) => {
                return Err(Unavailable(e.to_string()));
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => "Redis did not answer in time".to_owned(),
        };
        let mut c = self.connection.lock().await;
        c.live = None;
        c.failed_at = Some(Instant::now());
        Err(Unavailable(error))
    }

    /// The publish script's call for one publication.
    fn publish_command(&self, stream: &str, data: &str, key: Option<&str>) -> redis::Cmd {
        let ttl = self.limits.history_ttl.as_secs().max(1);
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(PUBLISH)
            .arg(3)
            .arg(format!("{PREFIX}pos:{stream}"))
            .arg(format!("{PREFIX}hist:{stream}"))
            .arg(format!("{PREFIX}key:{}", key.unwrap_or_default()))
            .arg(data)
            .arg(super::now())
            .arg(self.limits.history_limit)
            .arg(ttl)
            .arg(ttl * 10)
            .arg(super::new_epoch())
            .arg(KEY_TTL.as_secs())
            .arg(if key.is_some() { "1" } else { "0" });
        cmd
    }

    /// Runs a pipeline (one round trip, the commands in order); a failure
    /// drops the connection as [`Redis::run`] does. One reply per command.
    async fn run_pipeline(&self, pipe: redis::Pipeline) -> Result<Vec<Value>, Unavailable> {
        let mut live = self.connection().await?;
        let result =
            tokio::time::timeout(CALL_TIMEOUT, pipe.query_async::<Vec<Value>>(&mut live)).await;
        let error = match result {
            Ok(Ok(values)) => return Ok(values),
            Ok(Err(e)) if !(e.is_io_error() || e.is_connection_dropped() || e.is_timeout()) => {
                return Err(Unavailable(e.to_string()));
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => "Redis did not answer in time".to_owned(),
        };
        let mut c = self.connection.lock().await;
        c.live = None;
        c.failed_at = Some(Instant::now());
        Err(Unavailable(error))
    }

    async fn read(
        &self,
        stream: &str,
        from: u64,
    ) -> Result<Option<(String, u64, Vec<Entry>)>, Unavailable> {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(READ)
            .arg(2)
            .arg(format!("{PREFIX}pos:{stream}"))
            .arg(format!("{PREFIX}hist:{stream}"))
            .arg(format!("{from}-0"));
        let items = match self.run(cmd).await? {
            Value::Array(items) => items,
            other => return Err(Unavailable(format!("unexpected reply {other:?}"))),
        };
        if items.is_empty() {
            return Ok(None);
        }
        let text = |v: &Value| -> String {
            match v {
                Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
                Value::SimpleString(s) => s.clone(),
                Value::Int(i) => i.to_string(),
                _ => String::new(),
            }
        };
        let epoch = text(&items[0]);
        let last = text(&items[1]).parse().unwrap_or(0);
        let oldest = super::now().saturating_sub(self.limits.history_ttl.as_secs());
        let entries = items[2..]
            .chunks_exact(3)
            .map(|c| Entry {
                epoch: epoch.clone(),
                offset: text(&c[0]).parse().unwrap_or(0),
                data: text(&c[1]),
                at: text(&c[2]).parse().unwrap_or(0),
            })
            .filter(|e| e.at >= oldest)
            .collect();
        Ok(Some((epoch, last, entries)))
    }
}

/// The URL without its password, for logs.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***{}", &url[..scheme], &url[at..])
        }
        _ => url.to_owned(),
    }
}

fn parse_position(text: &str) -> Option<Position> {
    let (epoch, offset) = text.rsplit_once(':')?;
    Some(Position {
        epoch: epoch.to_owned(),
        offset: offset.parse().ok()?,
    })
}

impl Broker for Redis {
    fn describe(&self) -> String {
        self.describe.clone()
    }

    fn publish<'a>(
        &'a self,
        stream: &'a str,
        data: &'a str,
        key: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Position, Unavailable>> {
        Box::pin(async move {
            let cmd = self.publish_command(stream, data, key);
            match self.run(cmd).await? {
                Value::BulkString(b) => parse_position(&String::from_utf8_lossy(&b)),
                _ => None,
            }
            .ok_or_else(|| Unavailable("unexpected reply to the publish script".into()))
        })
    }

    fn publish_many<'a>(
        &'a self,
        publications: &'a [super::Publication],
    ) -> BoxFuture<'a, Vec<Result<Position, Unavailable>>> {
        Box::pin(async move {
            let mut pipe = redis::pipe();
            for p in publications {
                pipe.add_command(self.publish_command(&p.stream, &p.data, p.key.as_deref()));
            }
            let replies = match self.run_pipeline(pipe).await {
                Ok(replies) => replies,
                Err(e) => return publications.iter().map(|_| Err(e.clone())).collect(),
            };
            let mut replies = replies.into_iter();
            publications
                .iter()
                .map(|_| match replies.next() {
                    Some(Value::BulkString(b)) => parse_position(&String::from_utf8_lossy(&b))
                        .ok_or_else(|| {
                            Unavailable("unexpected reply to the publish script".into())
                        }),
                    Some(Value::ServerError(e)) => Err(Unavailable(format!("{e:?}"))),
                    other => Err(Unavailable(format!("unexpected reply {other:?}"))),
                })
                .collect()
        })
    }

    fn history_from<'a>(
        &'a self,
        stream: &'a str,
        epoch: &'a str,
        offset: u64,
    ) -> BoxFuture<'a, Result<Vec<Entry>, HistoryError>> {
        Box::pin(async move {
            match self.read(stream, offset.saturating_add(1)).await? {
                None => Err(HistoryError::UnknownStream),
                Some((current, last, kept)) => {
                    super::entries_after(&current, last, epoch, offset, kept)
                }
            }
        })
    }

    fn history_since<'a>(
        &'a self,
        stream: &'a str,
        since: u64,
    ) -> BoxFuture<'a, Result<Vec<Entry>, HistoryError>> {
        Box::pin(async move {
            Ok(match self.read(stream, 0).await? {
                None => Vec::new(),
                Some((_, _, mut kept)) => {
                    kept.retain(|e| e.at >= since);
                    kept
                }
            })
        })
    }

    fn store_session<'a>(
        &'a self,
        sid: &'a str,
        state: &'a str,
    ) -> BoxFuture<'a, Result<(), Unavailable>> {
        Box::pin(async move {
            let mut cmd = redis::cmd("SET");
            cmd.arg(format!("{PREFIX}session:{sid}"))
                .arg(state)
                .arg("EX")
                .arg(self.limits.sessions_ttl.as_secs().max(1));
            self.run(cmd).await.map(|_| ())
        })
    }

    fn session<'a>(&'a self, sid: &'a str) -> BoxFuture<'a, Result<Option<String>, Unavailable>> {
        Box::pin(async move {
            let mut cmd = redis::cmd("GET");
            cmd.arg(format!("{PREFIX}session:{sid}"));
            Ok(match self.run(cmd).await? {
                Value::BulkString(b) => Some(String::from_utf8_lossy(&b).into_owned()),
                _ => None,
            })
        })
    }

    fn take_session<'a>(
        &'a self,
        sid: &'a str,
        state: &'a str,
    ) -> BoxFuture<'a, Result<bool, Unavailable>> {
        Box::pin(async move {
            let mut cmd = redis::cmd("EVAL");
            cmd.arg(TAKE_SESSION)
                .arg(1)
                .arg(format!("{PREFIX}session:{sid}"))
                .arg(state);
            Ok(matches!(self.run(cmd).await?, Value::Int(1)))
        })
    }

    fn sessions_outlive_process(&self) -> bool {
        true
    }

    fn limits(&self) -> Limits {
        self.limits
    }

    fn presence_add<'a>(
        &'a self,
        stream: &'a str,
        sid: &'a str,
        pid: &'a str,
        info: Option<serde_json::Value>,
    ) -> BoxFuture<'a, Result<Option<PresenceEvent>, PresenceError>> {
        Box::pin(async move {
            let mut cmd = presence_script(PRESENCE_ADD);
            cmd.arg(stream)
                .arg(sid)
                .arg(pid)
                .arg(info_text(&info))
                .arg(self.limits.presence_ttl.as_millis() as u64);
            match self.run(cmd).await? {
                Value::Int(1) => Ok(Some(PresenceEvent::Join {
                    id: pid.to_owned(),
                    info,
                })),
                Value::Int(-1) => Err(PresenceError::IdMismatch),
                _ => Ok(None),
            }
        })
    }

    fn presence_remove<'a>(
        &'a self,
        stream: &'a str,
        sid: &'a str,
    ) -> BoxFuture<'a, Result<Option<PresenceEvent>, Unavailable>> {
        Box::pin(async move {
            let mut cmd = presence_script(PRESENCE_REMOVE);
            cmd.arg(stream).arg(sid);
            Ok(match self.run(cmd).await? {
                v @ Value::BulkString(_) => Some(PresenceEvent::Leave { id: value_text(&v) }),
                _ => None,
            })
        })
    }

    fn presence_info<'a>(
        &'a self,
        stream: &'a str,
        with_records: bool,
    ) -> BoxFuture<'a, Result<PresenceInfo, Unavailable>> {
        Box::pin(async move {
            let mut cmd = redis::cmd("HGETALL");
            cmd.arg(format!("{PREFIX}presence:{stream}:i"));
            let items = match self.run(cmd).await? {
                Value::Array(items) => items,
                Value::Map(pairs) => pairs.into_iter().flat_map(|(k, v)| [k, v]).collect(),
                _ => Vec::new(),
            };
            let total = items.len() / 2;
            let mut records: Vec<_> = match with_records {
                true => items
                    .chunks_exact(2)
                    .map(|c| (value_text(&c[0]), info_value(&value_text(&c[1]))))
                    .collect(),
                false => Vec::new(),
            };
            records.sort_by(|a, b| a.0.cmp(&b.0));
            Ok(PresenceInfo { total, records })
        })
    }

    fn touch_presence<'a>(&'a self, sid: &'a str) -> BoxFuture<'a, Result<(), Unavailable>> {
        Box::pin(async move {
            let mut cmd = presence_script(PRESENCE_TOUCH);
            cmd.arg(sid)
                .arg(self.limits.presence_ttl.as_millis() as u64);
            self.run(cmd).await.map(|_| ())
        })
    }

    fn expire_presence(&self) -> BoxFuture<'_, Result<Vec<(String, PresenceEvent)>, Unavailable>> {
        Box::pin(async move {
            let mut cmd = presence_script(PRESENCE_EXPIRE);
            cmd.arg(EXPIRE_BATCH);
            Ok(match self.run(cmd).await? {
                Value::Array(items) => items
                    .chunks_exact(2)
                    .map(|c| {
                        (
                            value_text(&c[0]),
                            PresenceEvent::Leave {
                                id: value_text(&c[1]),
                            },
                        )
                    })
                    .collect(),
                _ => Vec::new(),
            })
        })
    }
}
