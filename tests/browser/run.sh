#!/usr/bin/env bash
# Browser test of the chat demo, twice: the one-process demo, then a
# two-worker Puma cluster on a redis-server of its own (CLUSTER=1). Each
# run starts the demo (fresh SQLite database, reserved ports), runs
# chat.test.mjs in headless Chromium, and stops what it started by PID.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"

[ -d "$here/node_modules/playwright-core" ] || (cd "$here" && npm ci --silent --no-audit --no-fund)
mkdir -p "$root/tmp"
work="$(mktemp -d "$root/tmp/browser.XXXXXX")"
# Reserved for this run (held until cleanup): no other process gets them.
coproc PORT_HOLDER { exec python3 "$root/tests/support/hold_ports.py" 4; }
read -r PORT CABLE_PORT BROADCAST_PORT REDIS_PORT <&"${PORT_HOLDER[0]}"
export PORT CABLE_PORT BROADCAST_PORT RAILS_ENV=development
demo_pid=""
redis_pid=""
stop() { # stop PID: TERM, then KILL after 5 s
  local pid="$1"
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
}
cleanup() {
  kill "$PORT_HOLDER_PID" 2>/dev/null || true
  stop "$demo_pid"
  stop "$redis_pid"
  rm -rf "$work"
}
trap cleanup EXIT

run() { # run NAME: the demo as the environment says, then the browser test
  local name="$1"
  export CHAT_DB="$work/$name.sqlite3"
  echo "browser ($name): starting the demo (pages :$PORT, Ferrocable :$CABLE_PORT)"
  "$root/examples/chat/bin/demo" > "$work/$name.log" 2>&1 &
  demo_pid=$!
  for _ in $(seq 1 600); do
    if curl -sf "http://127.0.0.1:$PORT/" >/dev/null && curl -sf "http://127.0.0.1:$CABLE_PORT/health" >/dev/null; then break; fi
    if ! kill -0 "$demo_pid" 2>/dev/null; then cat "$work/$name.log"; echo "browser: the demo died" >&2; exit 1; fi
    sleep 0.2
  done
  curl -sf "http://127.0.0.1:$CABLE_PORT/health" >/dev/null || { cat "$work/$name.log"; echo "browser: demo not up" >&2; exit 1; }

  if BASE_URL="http://127.0.0.1:$PORT" CABLE_URL="http://127.0.0.1:$CABLE_PORT" \
     timeout 300 node --test "$here/chat.test.mjs"; then
    echo "browser ($name): PASS"
  else
    echo "browser ($name): FAIL; demo log:" >&2
    tail -50 "$work/$name.log" >&2
    exit 1
  fi
  stop "$demo_pid"
  demo_pid=""
}

run single

# The cluster: two workers, each with its Ferrocable server on CABLE_PORT;
# broadcasts, presence and whispers go through Redis (whispers and presence
# events between workers need the bus between nodes, `pubsub`: the `cluster`
# branch of issue 14). BROWSER_CLUSTER=0 skips this run.
[ "${BROWSER_CLUSTER:-1}" = 0 ] && exit 0
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no > "$work/redis.log" 2>&1 &
redis_pid=$!
for _ in $(seq 1 150); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.2; done
CLUSTER=1 WEB_CONCURRENCY=2 REDIS_URL="redis://127.0.0.1:$REDIS_PORT/0" run cluster
