#!/usr/bin/env bash
# End-to-end test of the ferrocable binary with:
#   - a Python gRPC app (tests/e2e/rpc_app.py) playing the Rails application,
#   - the official JS clients (@rails/actioncable and @anycable/core, over `ws`),
#   - a real redis-server (broadcasts published by the app through Redis).
#
# Usage (from anywhere):  bash tests/e2e/run.sh
# Environment knobs:
#   E2E_TIMEOUT   bound on the whole run, seconds (default 900; the first run
#                 may build the binary and install Python/npm packages)
#   E2E_KEEP=1    keep the run directory (logs) even when the test passes
#   E2E_DEBUG=1   verbose client logging
# Exit status: 0 when every check passed, non-zero otherwise.

set -uo pipefail

if [[ -z "${E2E_UNDER_TIMEOUT:-}" ]]; then
  export E2E_UNDER_TIMEOUT=1
  # The whole run is bounded; timeout signals the inner run's whole process
  # group, and the inner run's trap stops what it started, by PID.
  timeout -k 15 "${E2E_TIMEOUT:-900}" bash "$0" "$@" &
  child=$!
  trap 'kill -TERM "$child" 2>/dev/null' INT TERM
  wait "$child"
  rc=$?
  while kill -0 "$child" 2>/dev/null; do wait "$child"; rc=$?; done
  if [[ $rc -eq 124 || $rc -eq 137 ]]; then
    echo "e2e: FAIL: the whole run exceeded E2E_TIMEOUT=${E2E_TIMEOUT:-900}s" >&2
  fi
  exit $rc
fi

E2E_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$E2E_DIR/../.." && pwd)"
cd "$ROOT" || exit 2

say() { echo "e2e: $*"; }
die() { echo "e2e: FAIL: $*" >&2; exit 1; }

VENV="$ROOT/tmp/e2e-venv"
BIN="$ROOT/target/debug/ferrocable"
BROADCAST_KEY="testkey"
JWT_SECRET="e2e-jwt-secret"
STREAMS_SECRET="e2e-streams-secret"
REDIS_CHANNEL="__anycable__"

PIDS=()          # every background process this script started
FERRO_PID=""
RUN_DIR=""
RESULT=1

cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then kill -TERM "$pid" 2>/dev/null; fi
  done
  for _ in $(seq 1 30); do
    local alive=0
    for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [[ $alive -eq 0 ]] && break
    sleep 0.1
  done
  for pid in "${PIDS[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then
      echo "e2e: process $pid still alive after SIGTERM; sending SIGKILL" >&2
      kill -KILL "$pid" 2>/dev/null
    fi
  done
  if [[ -n "$RUN_DIR" && -d "$RUN_DIR" ]]; then
    if [[ $RESULT -eq 0 && -z "${E2E_KEEP:-}" ]]; then
      rm -rf "$RUN_DIR"
    else
      echo "e2e: logs kept in $RUN_DIR" >&2
    fi
  fi
}
trap cleanup EXIT
trap 'echo "e2e: interrupted" >&2; exit 130' INT TERM

show_logs() {
  local f
  for f in "$RUN_DIR"/{ferrocable.log,rpc_app.log,redis.log,rpc_calls.jsonl} "$RUN_DIR"/node-*.log; do
    f="${f#"$RUN_DIR"/}"
    if [[ -s "$RUN_DIR/$f" ]]; then
      echo "----- last lines of $f -----" >&2
      tail -n 40 "$RUN_DIR/$f" >&2
    fi
  done
}

# --- tools -------------------------------------------------------------------
for tool in node npm python3 curl; do
  command -v "$tool" >/dev/null || die "$tool is not installed"
done
REDIS_SERVER="$(command -v redis-server || true)"
[[ -x "$REDIS_SERVER" ]] || die "redis-server is not installed (apt-get install redis-server)"
REDIS_CLI="$(command -v redis-cli || true)"
[[ -x "$REDIS_CLI" ]] || die "redis-cli is not installed (apt-get install redis-tools)"
say "using node $(node --version), $(python3 --version), $("$REDIS_SERVER" --version | cut -d' ' -f1-3)"

# --- Python venv ---------------------------------------------------------------
REQ_HASH="$(sha256sum "$E2E_DIR/requirements.txt" | cut -d' ' -f1)"
if [[ ! -x "$VENV/bin/python" || "$(cat "$VENV/.requirements.sha256" 2>/dev/null)" != "$REQ_HASH" ]]; then
  say "creating Python venv in $VENV and installing tests/e2e/requirements.txt"
  mkdir -p "$ROOT/tmp"
  python3 -m venv "$VENV" || die "python3 -m venv failed"
  timeout 600 "$VENV/bin/pip" install --disable-pip-version-check -q -r "$E2E_DIR/requirements.txt" \
    || die "pip install failed"
  echo "$REQ_HASH" > "$VENV/.requirements.sha256"
else
  say "Python venv ready ($VENV)"
fi

# --- npm packages --------------------------------------------------------------
if [[ ! -d "$E2E_DIR/node_modules/@rails/actioncable" || ! -d "$E2E_DIR/node_modules/@anycable/core" \
      || ! -d "$E2E_DIR/node_modules/ws" ]]; then
  say "installing npm packages (npm ci in tests/e2e)"
  (cd "$E2E_DIR" && timeout 600 npm ci --no-audit --no-fund) || die "npm ci failed"
else
  say "npm packages ready"
fi

# --- the binary ----------------------------------------------------------------
# Always: a no-op when the binary is fresh, a rebuild when the sources changed.
# Built as the cargo integration tests build it (`cargo test` uplifts it to
# target/debug/ferrocable, dev-dependencies' features unified), so bin/test
# compiles the crates once; `cargo build --bin` would compile most a second time.
say "building the binary (as cargo test does)"
timeout 1800 cargo test --locked --no-run --test binary || die "cargo build failed"
[[ -x "$BIN" ]] || die "$BIN not found"
say "binary: $BIN"

# --- run directory, ports ------------------------------------------------------
mkdir -p "$ROOT/tmp"
RUN_DIR="$(mktemp -d "$ROOT/tmp/e2e-run.XXXXXX")"
# Reserved for this run (held until cleanup): no other process gets them.
coproc PORT_HOLDER { exec python3 "$ROOT/tests/support/hold_ports.py" 5; }
PIDS+=("$PORT_HOLDER_PID")
read -r REDIS_PORT RPC_PORT CABLE_PORT NODE_A_PORT NODE_B_PORT <&"${PORT_HOLDER[0]}"
[[ -n "${CABLE_PORT:-}" ]] || die "could not reserve ports"
say "ports: redis=$REDIS_PORT rpc=$RPC_PORT cable=$CABLE_PORT cluster=$NODE_A_PORT,$NODE_B_PORT; logs in $RUN_DIR"

wait_until() { # wait_until SECONDS DESCRIPTION PID COMMAND...
  local secs=$1 what=$2 pid=$3; shift 3
  local deadline=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    if [[ -n "$pid" ]] && ! kill -0 "$pid" 2>/dev/null; then
      show_logs; die "$what: the process exited early"
    fi
    if (( SECONDS >= deadline )); then show_logs; die "$what: not ready after ${secs}s"; fi
    sleep 0.1
  done
}

# --- redis-server --------------------------------------------------------------
say "starting redis-server on 127.0.0.1:$REDIS_PORT"
"$REDIS_SERVER" --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
  >"$RUN_DIR/redis.log" 2>&1 &
REDIS_PID=$!
PIDS+=("$REDIS_PID")
redis_ping() { [[ "$("$REDIS_CLI" -h 127.0.0.1 -p "$REDIS_PORT" ping)" == "PONG" ]]; }
wait_until 15 "redis-server" "$REDIS_PID" redis_ping
say "redis-server is up (pid $REDIS_PID)"

# --- the RPC app ---------------------------------------------------------------
say "starting the Python RPC app on 127.0.0.1:$RPC_PORT"
"$VENV/bin/python" -u "$E2E_DIR/rpc_app.py" --host 127.0.0.1 --port "$RPC_PORT" \
  --log "$RUN_DIR/rpc_calls.jsonl" --redis-url "redis://127.0.0.1:$REDIS_PORT" \
  --redis-channel "$REDIS_CHANNEL" --proto "$ROOT/proto/rpc.proto" \
  >"$RUN_DIR/rpc_app.log" 2>&1 &
RPC_PID=$!
PIDS+=("$RPC_PID")
rpc_ready() { grep -q "rpc_app: listening" "$RUN_DIR/rpc_app.log"; }
wait_until 30 "RPC app" "$RPC_PID" rpc_ready
say "RPC app is up (pid $RPC_PID)"

# --- ferrocable ----------------------------------------------------------------
say "starting ferrocable on 127.0.0.1:$CABLE_PORT"
"$BIN" --host=127.0.0.1 --port="$CABLE_PORT" --rpc_host="127.0.0.1:$RPC_PORT" \
  --redis_url="redis://127.0.0.1:$REDIS_PORT" --broadcast_adapter=redis,http \
  --broadcast_key="$BROADCAST_KEY" --log_level=debug \
  --jwt_secret="$JWT_SECRET" --streams_secret="$STREAMS_SECRET" --public_streams --turbo_streams \
  >"$RUN_DIR/ferrocable.log" 2>&1 &
FERRO_PID=$!
PIDS+=("$FERRO_PID")
health() { [[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$CABLE_PORT/health")" == "200" ]]; }
wait_until 30 "ferrocable /health" "$FERRO_PID" health
say "ferrocable is healthy (pid $FERRO_PID)"
redis_subscribed() {
  local n
  n="$("$REDIS_CLI" -h 127.0.0.1 -p "$REDIS_PORT" --raw pubsub numsub "$REDIS_CHANNEL" | sed -n 2p)"
  [[ "${n:-0}" -ge 1 ]]
}
wait_until 15 "ferrocable's Redis subscription to $REDIS_CHANNEL" "$FERRO_PID" redis_subscribed
say "ferrocable is subscribed to Redis channel $REDIS_CHANNEL"

# A two-node cluster for the reliable-stream tests: broker=redis (the
# default with redisx broadcasts), pings every second, pong_timeout 2 s.
CLUSTER_PIDS=()
for port in "$NODE_A_PORT" "$NODE_B_PORT"; do
  "$BIN" --host=127.0.0.1 --port="$port" --rpc_host="127.0.0.1:$RPC_PORT" \
    --redis_url="redis://127.0.0.1:$REDIS_PORT" --broadcast_adapter=redisx --broker=redis \
    --ping_interval=1 --pong_timeout=2 --log_level=debug \
    >"$RUN_DIR/node-$port.log" 2>&1 &
  CLUSTER_PIDS+=("$!")
  PIDS+=("$!")
  node_health() { [[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$1/health")" == "200" ]]; }
  wait_until 30 "cluster node on $port /health" "$!" node_health "$port"
done
stream_groups() {
  local n
  n="$("$REDIS_CLI" -h 127.0.0.1 -p "$REDIS_PORT" --raw xinfo groups __anycable__ 2>/dev/null | grep -c '^name$')"
  [[ "${n:-0}" -ge 2 ]]
}
wait_until 30 "both cluster nodes reading the redisx stream" "" stream_groups
say "two-node cluster up on $NODE_A_PORT and $NODE_B_PORT (pids ${CLUSTER_PIDS[*]})"

# --- the clients ---------------------------------------------------------------
say "running node --test tests/e2e/clients.test.mjs tests/e2e/fastlane.test.mjs"
E2E_CABLE_PORT="$CABLE_PORT" E2E_BROADCAST_KEY="$BROADCAST_KEY" E2E_RPC_LOG="$RUN_DIR/rpc_calls.jsonl" \
  E2E_JWT_SECRET="$JWT_SECRET" E2E_STREAMS_SECRET="$STREAMS_SECRET" \
  timeout -k 5 240 node --test --test-concurrency=1 --test-reporter=spec \
    "$E2E_DIR/clients.test.mjs" "$E2E_DIR/fastlane.test.mjs" &
NODE_PID=$!
PIDS+=("$NODE_PID")
wait "$NODE_PID"   # in the background so that a signal reaches our trap at once
NODE_RC=$?
if [[ $NODE_RC -eq 0 ]]; then say "client tests passed"; else say "client tests FAILED (exit $NODE_RC)"; fi

# Reliable streams with the extended protocol: after the client tests, whose
# checks count every call the application saw.
say "running node --test tests/e2e/reliable.test.mjs"
E2E_CABLE_PORT="$CABLE_PORT" E2E_BROADCAST_KEY="$BROADCAST_KEY" \
  E2E_CLUSTER_A_PORT="$NODE_A_PORT" E2E_CLUSTER_B_PORT="$NODE_B_PORT" E2E_REDIS_PORT="$REDIS_PORT" \
  timeout -k 5 240 node --test --test-concurrency=1 --test-reporter=spec "$E2E_DIR/reliable.test.mjs" &
NODE_PID=$!
PIDS+=("$NODE_PID")
wait "$NODE_PID"
RELIABLE_RC=$?
if [[ $RELIABLE_RC -eq 0 ]]; then say "reliable-stream tests passed"; else say "reliable-stream tests FAILED (exit $RELIABLE_RC)"; NODE_RC=$RELIABLE_RC; fi

# --- graceful shutdown ---------------------------------------------------------
SHUTDOWN_OK=0
say "sending SIGTERM to ferrocable (pid $FERRO_PID); it must exit 0 within 10 s"
kill -TERM "$FERRO_PID"
deadline=$((SECONDS + 10))
while kill -0 "$FERRO_PID" 2>/dev/null && (( SECONDS < deadline )); do sleep 0.1; done
if kill -0 "$FERRO_PID" 2>/dev/null; then
  say "ferrocable did NOT exit within 10 s of SIGTERM"
else
  wait "$FERRO_PID"
  FERRO_RC=$?
  if [[ $FERRO_RC -eq 0 ]]; then
    SHUTDOWN_OK=1
    say "ferrocable exited 0 after SIGTERM"
  else
    say "ferrocable exited with status $FERRO_RC after SIGTERM (expected 0)"
  fi
fi

PANIC_OK=1
if grep -q "panicked" "$RUN_DIR/ferrocable.log"; then
  PANIC_OK=0
  say "ferrocable log contains a panic:"
  grep -A3 "panicked" "$RUN_DIR/ferrocable.log" >&2
fi
RPC_ERRORS="$(grep -c '"method": "error"' "$RUN_DIR/rpc_calls.jsonl" 2>/dev/null)"
[[ -n "$RPC_ERRORS" ]] || RPC_ERRORS=0
if [[ "$RPC_ERRORS" -ne 0 ]]; then
  say "the RPC app logged $RPC_ERRORS contract violation(s):"
  grep '"method": "error"' "$RUN_DIR/rpc_calls.jsonl" >&2
fi

passed=0 failed=0
for check in "$NODE_RC" "$((1 - SHUTDOWN_OK))" "$((1 - PANIC_OK))" "$RPC_ERRORS"; do
  if [[ "$check" -eq 0 ]]; then passed=$((passed + 1)); else failed=$((failed + 1)); fi
done
if [[ $failed -eq 0 ]]; then
  RESULT=0
  say "PASS (client tests, graceful shutdown, no panic, no RPC contract violation)"
else
  show_logs
  say "FAIL"
fi
echo "e2e: $passed passed, $failed failed"
exit $RESULT
