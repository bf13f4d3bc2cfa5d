# frozen_string_literal: true

require "spec_helper"
require "redis_process"
require "puma_process"
require "redis"

# Broadcasting across processes over Redis: `broadcast_adapter: redis`
# publishes the __anycable__ payload (`redisx`: adds it to the stream), every server (this process's and each
# Puma worker's) receives it exactly once.
RSpec.describe "Ferrocable over Redis" do
  before(:all) { @redis = RedisProcess.new }
  after(:all) { @redis.stop }

  # A server of this process on `adapter`, with the gem's config saying the
  # same (so Action Cable's broadcasts in this process take that adapter).
  def with_server(adapter)
    saved = Ferrocable.config.options.dup
    Ferrocable.config.merge!(broadcast_adapter: adapter, redis_url: @redis.url)
    Ferrocable.reset!
    server = Ferrocable::Server.new(port: 0, broadcast_adapter: adapter, redis_url: @redis.url).start
    yield server
  ensure
    server&.stop
    Ferrocable.config.options.replace(saved)
    Ferrocable.reset!
  end

  # 16 clients of a Puma cluster subscribed to PidChannel, with the pid of
  # the worker serving each; both workers serve some.
  def clients_of_both_workers(port)
    pid_channel = { channel: "PidChannel" }.to_json
    clients = Array.new(16) do |i|
      c = WsClient.new("ws://127.0.0.1:#{port}/cable?guest=g#{i}")
      c.welcome
      c.subscribe(pid_channel)
      pid = c.receive["message"]["pid"]
      expect(c.receive["type"]).to eq("confirm_subscription")
      [c, pid]
    end
    pids = clients.map(&:last).uniq
    expect(pids.size).to eq(2), "connections spread over both workers (SO_REUSEPORT): #{pids}"
    clients
  end

  # How many subscribe to `channel` on our redis-server.
  def redis_subscribers(channel)
    s = TCPSocket.new("127.0.0.1", @redis.port)
    s.write("PUBSUB NUMSUB #{channel}\r\n")
    4.times.map { s.gets }.last.to_s.strip.delete_prefix(":").to_i
  ensure
    s&.close
  end

  # Closes the clients and stops the cluster: both workers shut down.
  def stop_cluster(puma, clients)
    clients.each { |c, _| c.close }
    Process.kill("TERM", puma.pid)
    puma.child.wait_exit(timeout: 60)
    expect(puma.output.scan("shutdown complete").size).to eq(2), puma.output
  end

  it "delivers a broadcast made in this process exactly once through Redis" do
    with_server("redis") do |server|
      eventually(timeout: 10) { server.native.metrics.include?("ferrocable_clients 0") }
      client = connect_as(server, "alice")
      id = join(client, "redis")
      # The subscriber may still be connecting to Redis: retry until it hears.
      eventually(timeout: 10) do
        ActionCable.server.broadcast("chat_redis", { probe: true })
        client.silent?(0.2) == false
      end
      client.silent?(0.5) # drain extra probes
      client.perform(id, action: "speak", text: "via redis")
      expect(client.receive["message"]).to eq("text" => "via redis", "from" => "alice")
      expect(client.silent?(0.5)).to be(true) # exactly once
      client.close
    end
  end

  it "broadcasts through a Redis stream with broadcast_adapter: redisx, delivered exactly once" do
    with_server("redisx") do |server|
      redis = Redis.new(url: @redis.url)
      # The server reads the stream once its consumer group exists.
      eventually(timeout: 10) { (redis.xinfo(:groups, "__anycable__") rescue []).size == 1 } # rubocop:disable Style/RescueModifier
      client = connect_as(server, "alice")
      id = join(client, "redisx")
      client.perform(id, action: "speak", text: "via redisx")
      expect(client.receive["message"]).to eq("text" => "via redisx", "from" => "alice")
      expect(client.silent?(0.5)).to be(true) # exactly once
      # It went through the stream, as AnyCable's redisx adapter writes it.
      payloads = redis.xrange("__anycable__").map { |_id, fields| JSON.parse(fields.fetch("payload")) }
      expect(payloads).to include(include("stream" => "chat_redisx"))
      client.close
    ensure
      redis&.close
    end
  end

  # Issue #14: with `broadcast_adapter: http` (the gem's default) a broadcast
  # made in a worker goes into that worker's hub; with a pubsub the worker
  # passes it on to the others, so every client gets it exactly once.
  it "passes a worker's in-process broadcasts on to the other workers over pubsub, once each", timeout: 300 do
    env = { "ANYCABLE_BROADCAST_ADAPTER" => "http", "ANYCABLE_PUBSUB" => "redis",
            "ANYCABLE_REDIS_URL" => @redis.url, "ANYCABLE_BROKER" => "none",
            "ANYCABLE_BROADCAST_KEY" => "cluster-spec-key" }
    PumaProcess.run(port: reserve_port, http_port: reserve_port, workers: 2, env: env) do |puma|
      pid_channel = { channel: "PidChannel" }.to_json
      clients = clients_of_both_workers(puma.port)
      pids = clients.map(&:last).uniq
      eventually(timeout: 20) { redis_subscribers("__anycable_internal__") == 2 }
      # From a client of each worker: every client hears each shout once
      # (the second shout is the fence for the first).
      senders = pids.map { |pid| clients.find { |_, p| p == pid }.first }
      senders.each_with_index do |sender, n|
        sender.perform(pid_channel, action: "shout", text: "hello #{n}")
        clients.each { |c, _| expect(c.receive["message"]).to include("shout" => "hello #{n}") }
      end
      clients.each { |c, _| expect(c.silent?(0.2)).to be(true) }
      stop_cluster(puma, clients)
    end
  end

  it "serves Puma cluster workers on one port, with broadcasts reaching clients of every worker", timeout: 300 do
    env = { "ANYCABLE_BROADCAST_ADAPTER" => "redis", "ANYCABLE_REDIS_URL" => @redis.url }
    PumaProcess.run(port: reserve_port, http_port: reserve_port, workers: 2, env: env) do |puma|
      pid_channel = { channel: "PidChannel" }.to_json
      clients = clients_of_both_workers(puma.port)
      # Wait until both workers' Redis subscribers are up.
      eventually(timeout: 20) { redis_subscribers("__anycable__") == 2 }
      sender, = clients.first
      sender.perform(pid_channel, action: "shout", text: "hello cluster")
      clients.each do |c, _|
        expect(c.receive["message"]).to include("shout" => "hello cluster")
        expect(c.silent?(0.2)).to be(true)
      end
      # Stopping is spec/puma_spec.rb's subject; here: both workers shut down.
      stop_cluster(puma, clients)
    end
  end
end
