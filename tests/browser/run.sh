#!/usr/bin/env bash
# Browser test of the chat demo: starts the demo (fresh SQLite database,
# reserved ports), runs chat.test.mjs in headless Chromium, stops the demo by PID.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"

[ -d "$here/node_modules/playwright-core" ] || (cd "$here" && npm ci --silent --no-audit --no-fund)
mkdir -p "$root/tmp"
work="$(mktemp -d "$root/tmp/browser.XXXXXX")"
# Reserved for this run (held until cleanup): no other process gets them.
coproc PORT_HOLDER { exec python3 "$root/tests/support/hold_ports.py" 3; }
read -r PORT CABLE_PORT BROADCAST_PORT <&"${PORT_HOLDER[0]}"
export PORT CABLE_PORT BROADCAST_PORT CHAT_DB="$work/chat.sqlite3" RAILS_ENV=development
demo_pid=""
cleanup() {
  kill "$PORT_HOLDER_PID" 2>/dev/null || true
  if [ -n "$demo_pid" ] && kill -0 "$demo_pid" 2>/dev/null; then
    kill -TERM "$demo_pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$demo_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$demo_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

echo "browser: starting the demo (pages :$PORT, Ferrocable :$CABLE_PORT)"
"$root/examples/chat/bin/demo" > "$work/demo.log" 2>&1 &
demo_pid=$!
for _ in $(seq 1 300); do
  if curl -sf "http://127.0.0.1:$PORT/" >/dev/null && curl -sf "http://127.0.0.1:$CABLE_PORT/health" >/dev/null; then break; fi
  if ! kill -0 "$demo_pid" 2>/dev/null; then cat "$work/demo.log"; echo "browser: the demo died" >&2; exit 1; fi
  sleep 0.2
done
curl -sf "http://127.0.0.1:$CABLE_PORT/health" >/dev/null || { cat "$work/demo.log"; echo "browser: demo not up" >&2; exit 1; }

if BASE_URL="http://127.0.0.1:$PORT" CABLE_URL="http://127.0.0.1:$CABLE_PORT" \
   timeout 300 node --test "$here/chat.test.mjs"; then
  echo "browser: PASS (screenshot: tmp/screenshots/chat.png)"
else
  echo "browser: FAIL; demo log:" >&2
  tail -50 "$work/demo.log" >&2
  exit 1
fi
