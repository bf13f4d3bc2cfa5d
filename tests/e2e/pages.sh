#!/usr/bin/env bash
# Pages with the real client packages in headless Chromium (Debian's, driven
# by playwright-core) against the ferrocable binary: turbo-rails'
# <turbo-cable-stream-source> (@hotwired/turbo-rails: @hotwired/turbo +
# @rails/actioncable), @anycable/turbo-stream's with @anycable/web, and
# @anycable/web with a JWT, signed streams, whispers and presence. No
# application: the fast lane answers everything (the binary's rpc_host
# points at a closed port). Stops what it started, by PID.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
[ -d "$here/node_modules/playwright-core" ] && [ -d "$here/node_modules/@anycable/web" ] \
  || (cd "$here" && npm ci --silent --no-audit --no-fund)
[ -x /usr/bin/chromium ] || { echo "pages: /usr/bin/chromium is missing (apt-get install chromium)" >&2; exit 1; }
(cd "$root" && timeout 1800 cargo test --locked --no-run --test binary >/dev/null 2>&1) || { echo "pages: build failed" >&2; exit 1; }
mkdir -p "$root/tmp"
work="$(mktemp -d "$root/tmp/pages.XXXXXX")"
coproc PORT_HOLDER { exec python3 "$root/tests/support/hold_ports.py" 3; }
read -r CABLE_PORT PAGES_PORT RPC_PORT <&"${PORT_HOLDER[0]}"
bin_pid=""
cleanup() {
  kill "$PORT_HOLDER_PID" 2>/dev/null || true
  if [ -n "$bin_pid" ] && kill -0 "$bin_pid" 2>/dev/null; then
    kill -TERM "$bin_pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$bin_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$bin_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
export PAGES_JWT_SECRET="pages-jwt-secret" PAGES_STREAMS_SECRET="pages-streams-secret" \
  PAGES_TURBO_KEY="pages-turbo-key" PAGES_BROADCAST_KEY="pages-broadcast-key"
"$root/target/debug/ferrocable" --host=127.0.0.1 --port="$CABLE_PORT" --rpc_host="127.0.0.1:$RPC_PORT" \
  --broadcast_adapter=http --broadcast_key="$PAGES_BROADCAST_KEY" --broker=memory \
  --jwt_secret="$PAGES_JWT_SECRET" --streams_secret="$PAGES_STREAMS_SECRET" --streams_whisper \
  --turbo_streams --turbo_streams_secret="$PAGES_TURBO_KEY" --log_level=debug > "$work/ferrocable.log" 2>&1 &
bin_pid=$!
for _ in $(seq 1 300); do
  curl -sf "http://127.0.0.1:$CABLE_PORT/health" >/dev/null && break
  kill -0 "$bin_pid" 2>/dev/null || { cat "$work/ferrocable.log"; echo "pages: the binary died" >&2; exit 1; }
  sleep 0.1
done
if CABLE_PORT="$CABLE_PORT" PAGES_PORT="$PAGES_PORT" timeout 300 node --test --test-concurrency=1 "$here/pages.test.mjs"; then
  echo "pages: PASS"
else
  echo "pages: FAIL; ferrocable log:" >&2
  tail -60 "$work/ferrocable.log" >&2
  exit 1
fi
