# frozen_string_literal: true

require "spec_helper"

# Native::Server#start and #stop wait for the server's own thread with the
# GVL released. Other Ruby threads must keep running meanwhile (even ones
# that ask the same server `running?`), and Ruby must be able to interrupt
# the wait (Thread#raise, Thread#kill, Ctrl-C) with the server still ending
# up stopped. Here this spec is the application: it answers the server's
# calls itself, and a stop is kept waiting by a Disconnect call it has not
# answered yet (timeouts set far beyond any bound below).
RSpec.describe "Native::Server start and stop" do
  def native_args
    ["--host=127.0.0.1", "--port=0", "--log_level=error", "--shutdown_timeout=600", "--rpc_request_timeout=600000",
     "--rpc_command_timeout=600000"]
  end

  def welcome_reply
    { "status" => "success", "identifiers" => "{}", "transmissions" => ['{"type":"welcome"}'] }
  end

  def take_call(native, kind)
    call = nil
    eventually(timeout: 60) { call = native.next_call(0.1) }
    expect(call["kind"]).to eq(kind)
    call
  end

  # A server with one welcomed client; returns [native, client].
  def serving_one_client
    native = Ferrocable::Native::Server.new(native_args, "websocket")
    port = native.start(false)
    # The embedded server answers the handshake once connect is answered.
    opening = Thread.new { WsClient.new("ws://127.0.0.1:#{port}/cable", open_timeout: 60) }
    native.reply(take_call(native, "connect")["id"], welcome_reply)
    client = opening.value
    client.welcome(timeout: 60)
    [native, client]
  end

  # A thread blocked in `stop`: shutdown began (the client was told) and
  # waits for the Disconnect call.
  def blocked_in_stop(native, client)
    stopper = Thread.new { native.stop }
    stopper.report_on_exception = false
    expect(client.receive(timeout: 60)).to eq("type" => "disconnect", "reason" => "server_restart",
                                              "reconnect" => true)
    eventually(timeout: 60) { stopper.status == "sleep" }
    stopper
  end

  # The interrupted stop left a shutdown in progress: it completes once the
  # Disconnect call is answered, and the server can start again.
  def finish_shutdown(native, client)
    expect(native.running?).to be(true)
    native.reply(take_call(native, "disconnect")["id"], { "status" => "success" })
    eventually(timeout: 60) { !native.running? }
    expect(client.wait_closed(timeout: 60)).to eq(1001)
    expect(native.port).to be_nil
    expect(native.stop).to be(true)
    expect(native.start(false)).to be_a(Integer)
    expect(native.stop).to be(true)
  end

  # Whatever failed, answers what is left so no thread stays blocked in stop.
  def release(native)
    while (call = native.next_call(0.1))
      native.reply(call["id"], { "status" => "success" })
    end
    native.stop
  end

  it "returns from stop at once on Thread#raise; the shutdown completes by itself", timeout: 300 do
    native, client = serving_one_client
    stopper = blocked_in_stop(native, client)
    stopper.raise(IOError, "stop interrupted")
    expect { stopper.join(60) }.to raise_error(IOError, "stop interrupted")
    finish_shutdown(native, client)
  ensure
    release(native) if native
  end

  it "returns from stop at once on Thread#kill; the shutdown completes by itself", timeout: 300 do
    native, client = serving_one_client
    stopper = blocked_in_stop(native, client)
    stopper.kill
    expect(stopper.join(60)).to eq(stopper)
    expect(stopper.alive?).to be(false)
    finish_shutdown(native, client)
  ensure
    release(native) if native
  end

  def native_script(body)
    ProcessChild.ruby(<<~RUBY)
      $stdout.sync = true
      require "ferrocable/errors"
      require "ferrocable/ferrocable_ext"
      ARGS = #{native_args.inspect}.freeze
      #{body}
    RUBY
  end

  # A process, because the defect this guards against (start holding the
  # server's lock while it waited without the GVL) deadlocks the whole VM.
  it "keeps other threads running while start and stop wait, even ones asking running? and port", timeout: 300 do
    body = <<~'RUBY'
      native = Ferrocable::Native::Server.new(ARGS, "websocket")
      asked = 0
      answers = Hash.new(0)
      asking = Thread.new do
        loop do
          answers[native.running?] += 1
          native.port
          asked += 1
        end
      end
      Thread.pass while asked.zero?
      20.times do
        native.start(false) or raise "no port"
        native.stop or raise "stop did not finish"
      end
      asking.kill
      puts "DONE asked=#{asked} (running: #{answers[true]}, not running: #{answers[false]})"
    RUBY
    ProcessChild.run(native_script(body)) do |child|
      child.wait_for(/^DONE asked=\d+/, timeout: 120)
      expect(child.wait_exit(timeout: 60).success?).to be(true), child.output
    end
  end

  it "raises Interrupt from a stop waiting in the main thread on Ctrl-C (SIGINT)", timeout: 300 do
    body = <<~'RUBY'
      native = Ferrocable::Native::Server.new(ARGS, "websocket")
      puts "PORT #{native.start(false)}"
      call = nil
      call = native.next_call(0.1) until call
      native.reply(call["id"], { "status" => "success", "identifiers" => "{}",
                                 "transmissions" => ['{"type":"welcome"}'] })
      $stdin.gets
      begin
        native.stop
        puts "STOP RETURNED"
      rescue Interrupt
        puts "INTERRUPTED running=#{native.running?}"
      end
      call = nil
      call = native.next_call(0.1) until call
      native.reply(call["id"], { "status" => "success" })
      Thread.pass while native.running?
      puts "STOPPED #{native.stop}"
    RUBY
    ProcessChild.run(native_script(body)) do |child|
      port = child.wait_for(/^PORT (\d+)$/)[1].to_i
      client = WsClient.new("ws://127.0.0.1:#{port}/cable", open_timeout: 60)
      client.welcome(timeout: 60)
      child.input.puts "stop"
      # The server_restart frame comes from inside stop: the child waits there.
      expect(client.receive(timeout: 60)).to include("reason" => "server_restart")
      Process.kill("INT", child.pid)
      child.wait_for(/^INTERRUPTED running=true$/, timeout: 120)
      child.wait_for(/^STOPPED true$/, timeout: 120)
      expect(child.wait_exit(timeout: 60).success?).to be(true), child.output
      expect(client.wait_closed(timeout: 60)).to eq(1001)
    end
  end
end
