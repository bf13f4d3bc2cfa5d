#!/usr/bin/env bash
# Pages with the real client packages in headless Chromium (Debian's, driven
# by playwright-core) against the ferrocable binary (`pages.sh binary`, the
# default) or the embedded server (`pages.sh embedded`): turbo-rails'
# <turbo-cable-stream-source> (@hotwired/turbo-rails: @hotwired/turbo +
# @rails/actioncable), @anycable/turbo-stream's with @anycable/web, and
# @anycable/web with a JWT, signed streams, whispers and presence, and bad
# tokens and signatures refused. Binary: no application, the fast lane
# answers everything (rpc_host points at a closed port). Embedded: the
# dummy Rails app (spec/dummy) under Puma with `plugin :ferrocable` and
# turbo_streams on, the Turbo key taken from the app by the Railtie
# (turbo-rails' when it can be loaded, else spec/dummy/lib/turbo_stand_in.rb);
# it needs the compiled extension (`rake compile`). One test file
# (pages.test.mjs) for both. Stops what it started, by PID.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
[ -d "$here/node_modules/playwright-core" ] && [ -d "$here/node_modules/@anycable/web" ] \
  || (cd "$here" && npm ci --silent --no-audit --no-fund)
[ -x /usr/bin/chromium ] || { echo "pages: /usr/bin/chromium is missing (apt-get install chromium)" >&2; exit 1; }
target="${1:-binary}"
case "$target" in
  binary) (cd "$root" && timeout 1800 cargo test --locked --no-run --test binary >/dev/null 2>&1) \
            || { echo "pages: build failed" >&2; exit 1; } ;;
  embedded) [ -f "$root/lib/ferrocable/ferrocable_ext.so" ] \
              || { echo "pages: the extension is not compiled (rake compile)" >&2; exit 1; } ;;
  *) echo "usage: pages.sh [binary|embedded]" >&2; exit 2 ;;
esac
mkdir -p "$root/tmp"
work="$(mktemp -d "$root/tmp/pages.XXXXXX")"
coproc PORT_HOLDER { exec python3 "$root/tests/support/hold_ports.py" 4; }
read -r CABLE_PORT PAGES_PORT RPC_PORT HTTP_PORT <&"${PORT_HOLDER[0]}"
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
export PAGES_TARGET="$target" PAGES_JWT_SECRET="pages-jwt-secret" PAGES_STREAMS_SECRET="pages-streams-secret" \
  PAGES_BROADCAST_KEY="pages-broadcast-key"
if [ "$target" = binary ]; then
  export PAGES_TURBO_KEY="pages-turbo-key"
  "$root/target/debug/ferrocable" --host=127.0.0.1 --port="$CABLE_PORT" --rpc_host="127.0.0.1:$RPC_PORT" \
    --broadcast_adapter=http --broadcast_key="$PAGES_BROADCAST_KEY" --broker=memory \
    --jwt_secret="$PAGES_JWT_SECRET" --streams_secret="$PAGES_STREAMS_SECRET" --streams_whisper \
    --turbo_streams --turbo_streams_secret="$PAGES_TURBO_KEY" --log_level=debug > "$work/ferrocable.log" 2>&1 &
else
  # spec/dummy's secret_key_base (config/application.rb): the test derives
  # turbo-rails' key from it; the server is given no Turbo key at all.
  export PAGES_SECRET_KEY_BASE="ferrocable-dummy-secret-key-base-for-specs-only"
  printf 'threads 1, 2\nbind "tcp://127.0.0.1:%s"\nplugin :ferrocable\n' "$HTTP_PORT" > "$work/puma.rb"
  DUMMY_TURBO=1 RAILS_ENV=test RUBYLIB="$root/lib${RUBYLIB:+:$RUBYLIB}" DUMMY_LOG=/dev/stdout \
    ANYCABLE_PORT="$CABLE_PORT" ANYCABLE_BROADCAST_ADAPTER=http ANYCABLE_BROADCAST_KEY="$PAGES_BROADCAST_KEY" \
    ANYCABLE_BROKER=memory ANYCABLE_JWT_SECRET="$PAGES_JWT_SECRET" ANYCABLE_STREAMS_SECRET="$PAGES_STREAMS_SECRET" \
    ANYCABLE_STREAMS_WHISPER=true ANYCABLE_TURBO_STREAMS=true ANYCABLE_LOG_LEVEL=debug \
    puma -C "$work/puma.rb" "$root/spec/dummy/config.ru" > "$work/ferrocable.log" 2>&1 &
fi
bin_pid=$!
# A cold Rails boot on a busy machine: a generous bound.
for _ in $(seq 1 1200); do
  curl -sf "http://127.0.0.1:$CABLE_PORT/health" >/dev/null && break
  kill -0 "$bin_pid" 2>/dev/null || { cat "$work/ferrocable.log"; echo "pages: the $target server died" >&2; exit 1; }
  sleep 0.1
done
if CABLE_PORT="$CABLE_PORT" PAGES_PORT="$PAGES_PORT" timeout 300 node --test --test-concurrency=1 "$here/pages.test.mjs"; then
  echo "pages ($target): PASS"
else
  echo "pages ($target): FAIL; server log:" >&2
  tail -60 "$work/ferrocable.log" >&2
  exit 1
fi
