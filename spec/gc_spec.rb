# frozen_string_literal: true

require "spec_helper"

# Every Ruby-visible object of the extension under GC.stress: creating,
# starting, serving calls (hashes built in Rust), replying, broadcasting,
# errors raised from Rust, stopping, and servers collected while running.
# It runs in a child process with only the extension loaded (GC.stress over
# a whole Rails heap would take minutes).
RSpec.describe "The extension under GC.stress" do
  script = <<~'RUBY'
    require "ferrocable/errors"
    require "ferrocable/ferrocable_ext"
    require "ws_client"
    # With a key, HTTP broadcasts stay on the (ephemeral) WebSocket port.
    ARGS = ["--host=127.0.0.1", "--port=0", "--broadcast_adapter=http", "--broadcast_key=gc",
            "--log_level=error"].freeze

    def stressed
      GC.stress = true
      yield
    ensure
      GC.stress = false
    end

    def next_call(native)
      call = nil
      call = stressed { native.next_call(0.2) } until call
      call
    end

    native = stressed { Ferrocable::Native::Server.new(ARGS, "websocket") }
    stressed { raise "batch on an idle server" unless native.next_calls(0.01, 4) == [] }
    port = stressed { native.start(false) }
    client_thread = Thread.new { WsClient.new("ws://127.0.0.1:#{port}/cable").tap(&:welcome) }
    call = next_call(native)
    raise "bad call #{call}" unless call["kind"] == "connect" && call["env"]["headers"]["REMOTE_ADDR"] == "127.0.0.1"

    reply = { "status" => "success", "identifiers" => "{}", "transmissions" => ['{"type":"welcome"}'],
              "cstate" => { "k" => "v" } }
    raise "reply not taken" unless stressed { native.reply(call["id"], call["kind"], reply) }

    client = client_thread.value
    stressed do
      native.broadcast("nobody-listens", "{}")
      begin
        native.publish("{not json")
        raise "publish accepted bad JSON"
      rescue ArgumentError
        nil
      end
      raise "metrics" unless native.metrics.include?("ferrocable_clients 1")
    end
    client.close
    disconnect = next_call(native)
    raise "expected disconnect" unless disconnect["kind"] == "disconnect"

    stressed do
      native.reply(disconnect["id"], "disconnect", { "status" => "success" })
      raise "stop" unless native.stop
      raise "still running" if native.running?
      raise "call after stop" unless native.next_call(0.01).nil?
    end

    stressed do
      begin
        Ferrocable::Native::Server.new(["--port=nope"], "websocket")
        raise "bad option accepted"
      rescue Ferrocable::ConfigError
        nil
      end
      spare = Ferrocable::Native::Server.new(ARGS, "websocket")
      begin
        spare.reply(1, "connect", { "status" => "maybe" })
        raise "bad status accepted"
      rescue ArgumentError
        nil
      end
      begin
        spare.broadcast("s", "d")
        raise "broadcast on a stopped server"
      rescue Ferrocable::Error
        nil
      end
      3.times { Ferrocable::Native::Server.new(ARGS, "websocket").start(false) }
      GC.start
    end
    puts "GC STRESS OK"
  RUBY

  it "survives the whole lifecycle with GC.stress on" do
    out = IO.popen(["timeout", "120", "ruby", "-I", File.join(ROOT, "lib"), "-I", File.join(ROOT, "spec", "support"),
                    "-e", script], err: %i[child out], &:read)
    expect(out).to include("GC STRESS OK"), out
  end
end
