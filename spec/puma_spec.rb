# frozen_string_literal: true

require "spec_helper"
require "puma_process"

# `plugin :ferrocable` when Puma is told to stop. Puma 5 runs its stop hooks
# inside its SIGTERM trap handler (single mode), where a Mutex cannot be
# locked; in cluster mode each worker stops its own server. Either way every
# client must get server_restart and a 1001 close, and the app's disconnect
# callbacks must run, before Puma exits as it would without the plugin.
RSpec.describe "Puma with plugin :ferrocable" do
  # How Ruby reports an exception: "...: message (ThreadError)", then
  # "from file:line:in ..." lines; a thread's death is announced too.
  def exception_report
    /\((?:\w+::)*\w+(?:Error|Exception)\)$|^\s+from \S+:\d+:in `|terminated with exception/
  end

  # Guests, each in a chat room and in PidChannel (which tells the worker
  # serving it), until `pids` workers serve some.
  def guests(port, pids:)
    clients = []
    seen = []
    until clients.size >= 4 && seen.uniq.size >= pids
      raise "64 connections all served by #{seen.uniq}" if clients.size >= 64

      name = "g#{clients.size}"
      client = WsClient.new("ws://127.0.0.1:#{port}/cable?guest=#{name}", open_timeout: 30)
      client.welcome(timeout: 30)
      join(client, "puma")
      pid_channel = { channel: "PidChannel" }.to_json
      client.subscribe(pid_channel)
      seen << client.receive(timeout: 30)["message"]["pid"]
      expect(client.receive(timeout: 30)).to eq("identifier" => pid_channel, "type" => "confirm_subscription")
      clients << [name, client]
    end
    clients
  end

  def stop_gracefully(workers:, signal:, config: "")
    events_file = File.join(Dir.tmpdir, "ferrocable-puma-events-#{Process.pid}-#{signal}-#{workers}")
    File.delete(events_file) if File.exist?(events_file)
    PumaProcess.run(port: reserve_port, http_port: reserve_port, workers: workers, config: config,
                    env: { "DUMMY_EVENTS" => events_file }) do |puma|
      clients = guests(puma.port, pids: [workers, 1].max)
      Process.kill(signal, puma.pid)
      clients.each do |_, client|
        expect(client.receive(timeout: 60)).to eq("type" => "disconnect", "reason" => "server_restart",
                                                  "reconnect" => true)
        expect(client.wait_closed(timeout: 60)).to eq(1001)
      end
      status = puma.child.wait_exit(timeout: 120)
      expect(puma.output).not_to match(exception_report)
      events = File.readlines(events_file).map { |line| JSON.parse(line) }
      clients.each do |name, _|
        expect(events).to include(["unsubscribed", name, "puma"], ["disconnect", name])
      end
      yield status, puma.output
    end
  ensure
    File.delete(events_file) if events_file && File.exist?(events_file)
  end

  { "single" => 0, "cluster" => 2 }.each do |mode, workers|
    it "stops gracefully on SIGINT in #{mode} mode", timeout: 300 do
      stop_gracefully(workers: workers, signal: "INT") do |status, output|
        expect(status.exitstatus).to eq(0), output
      end
    end

    # Puma re-raises SIGTERM once stopped (raise_exception_on_sigterm, on by
    # default): being ended by that signal is how it exits, with or without
    # the plugin.
    it "stops gracefully on SIGTERM in #{mode} mode", timeout: 300 do
      stop_gracefully(workers: workers, signal: "TERM") do |status, output|
        expect(status.termsig).to eq(Signal.list["TERM"]), "#{status.inspect}\n#{output}"
      end
    end
  end

  it "stops gracefully before a hot restart (SIGUSR2) in single mode, then serves again", timeout: 300 do
    events_file = File.join(Dir.tmpdir, "ferrocable-puma-events-#{Process.pid}-usr2")
    File.delete(events_file) if File.exist?(events_file)
    PumaProcess.run(port: reserve_port, http_port: reserve_port, env: { "DUMMY_EVENTS" => events_file }) do |puma|
      clients = guests(puma.port, pids: 1)
      Process.kill("USR2", puma.pid)
      clients.each do |_, client|
        expect(client.receive(timeout: 60)).to include("reason" => "server_restart")
        expect(client.wait_closed(timeout: 60)).to eq(1001)
      end
      # The same process, exec'd anew, listens again; the old one made its
      # Disconnect calls before it was replaced.
      puma.child.wait_for(/Ferrocable: server listening on port #{puma.port}/, timeout: 120, count: 2)
      events = File.readlines(events_file).map { |line| JSON.parse(line) }
      clients.each { |name, _| expect(events).to include(["unsubscribed", name, "puma"], ["disconnect", name]) }
      guests(puma.port, pids: 1).each { |_, client| client.close }
      expect(puma.output).not_to match(exception_report)
    end
  ensure
    File.delete(events_file) if events_file && File.exist?(events_file)
  end

  it "exits 0 on SIGTERM with raise_exception_on_sigterm false", timeout: 300 do
    stop_gracefully(workers: 0, signal: "TERM", config: "raise_exception_on_sigterm false") do |status, output|
      expect(status.exitstatus).to eq(0), output
    end
  end
end
