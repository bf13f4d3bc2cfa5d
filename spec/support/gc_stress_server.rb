# frozen_string_literal: true

# The server side of spec/gc_spec.rb, run as its own process: every entry
# point of the extension with GC.stress on (Hashes built in Rust, replies
# read back, broadcasts, errors raised from Rust, a worker killed while it
# waits without the GVL, stop, servers collected while running). Only the
# extension is loaded: GC.stress over a whole Rails heap would take minutes.
#
# GC.stress is process-wide, so the WebSocket client is the spec process,
# never a thread in here (it would be starved). The two sides step each
# other through stdout (`STEP ...` lines) and stdin; every wait here is
# bounded, and the spec kills this process by PID if it hangs anyway.
$stdout.sync = true
require "json"
require "ferrocable/errors"
require "ferrocable/ferrocable_ext"

# A stressed process answers slowly: no call may time out waiting for it.
# With a key, HTTP broadcasts stay on the (ephemeral) WebSocket port.
ARGS = ["--host=127.0.0.1", "--port=0", "--broadcast_adapter=http", "--broadcast_key=gc", "--log_level=warn",
        "--rpc_request_timeout=600000", "--rpc_command_timeout=600000"].freeze
# A stressed process is slow; this bound only keeps a lost client from
# holding the process forever.
WAIT_SECONDS = 600

def stressed
  GC.stress = true
  yield
ensure
  GC.stress = false
end

def check(condition, message)
  return if condition

  warn "GC STRESS FAILED: #{message}"
  exit 1
end

def next_call(native, kind)
  deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + WAIT_SECONDS
  loop do
    call = stressed { native.next_call(0.2) }
    if call
      check(call["kind"] == kind, "expected a #{kind} call, got #{call.inspect}")
      return call
    end
    check(Process.clock_gettime(Process::CLOCK_MONOTONIC) < deadline, "no #{kind} call within #{WAIT_SECONDS}s")
  end
end

def step(name)
  puts "STEP #{name}"
  check($stdin.gets, "the spec went away before #{name}")
end

native = stressed { Ferrocable::Native::Server.new(ARGS, "websocket") }
stressed { check(native.next_calls(0.01, 4) == [], "batch on an idle server") }
port = stressed { native.start(false) }
puts "PORT #{port}"

connect = next_call(native, "connect")
check(connect["env"]["headers"]["REMOTE_ADDR"] == "127.0.0.1", "connect env #{connect.inspect}")
welcome = { "status" => "success", "identifiers" => "{}", "transmissions" => ['{"type":"welcome"}'],
            "cstate" => { "k" => "v" } }
check(stressed { native.reply(connect["id"], welcome) }, "connect reply not taken")

subscribe = next_call(native, "command")
# An embedded command carries no env, identifiers or state: the live
# connection object has them.
check(subscribe["command"] == "subscribe" && !subscribe.key?("env") && !subscribe.key?("connection_identifiers"),
      "subscribe call #{subscribe.inspect}")
# An embedded application transmits its own confirmation (as Action Cable does).
subscribed = { "status" => "success", "streams" => ["gc"], "istate" => { "i" => "1" },
               "transmissions" => [{ identifier: subscribe["identifier"], message: { hello: "gc" } }.to_json,
                                   { identifier: subscribe["identifier"], type: "confirm_subscription" }.to_json] }
check(stressed { native.reply(subscribe["id"], subscribed) }, "subscribe reply not taken")
step "SUBSCRIBED"

stressed do
  native.broadcast("gc", '{"n":1}')
  native.publish('{"stream":"gc","data":"{\"n\":2}"}')
  begin
    native.publish("{not json")
    check(false, "publish accepted bad JSON")
  rescue ArgumentError
    nil
  end
  check(native.metrics.include?("ferrocable_clients 1"), "metrics")
  check(native.client_count == 1, "client_count")
end
step "BROADCAST"

disconnect = next_call(native, "disconnect")
check(disconnect["subscriptions"] == [subscribe["identifier"]], "disconnect call #{disconnect.inspect}")
stressed { native.reply(disconnect["id"], { "status" => "success" }) }

# A worker thread killed while it waits for a call with the GVL released.
waiter = Thread.new { stressed { native.next_call(WAIT_SECONDS) } }
Thread.pass until waiter.status == "sleep" || !waiter.alive?
stressed do
  waiter.kill
  check(waiter.join(WAIT_SECONDS), "a killed waiter did not end")
end

stressed do
  check(native.stop, "stop did not finish in time")
  check(!native.running?, "still running after stop")
  check(native.next_call(0.01).nil?, "call after stop")
end

stressed do
  begin
    Ferrocable::Native::Server.new(["--port=nope"], "websocket")
    check(false, "bad option accepted")
  rescue Ferrocable::ConfigError
    nil
  end
  spare = Ferrocable::Native::Server.new(ARGS, "websocket")
  begin
    spare.reply(1, { "status" => "maybe" })
    check(false, "bad status accepted")
  rescue ArgumentError
    nil
  end
  begin
    spare.broadcast("s", "d")
    check(false, "broadcast on a stopped server")
  rescue Ferrocable::Error
    nil
  end
  3.times { Ferrocable::Native::Server.new(ARGS, "websocket").start(false) }
  GC.start
end
puts "GC STRESS OK"
