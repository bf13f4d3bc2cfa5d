# frozen_string_literal: true

require "spec_helper"

# Reliable streams in embedded mode: the official @anycable/core client on
# actioncable-v1-ext-json against the embedded server and the dummy app's
# ChatChannel (broadcasts made in this process, memory broker).
RSpec.describe "reliable streams (extended protocol) in embedded mode" do
  before(:all) do
    e2e = File.join(ROOT, "tests", "e2e")
    unless File.directory?(File.join(e2e, "node_modules", "@anycable", "core"))
      system("npm", "ci", "--silent", "--no-audit", "--no-fund", chdir: e2e, exception: true)
    end
    @server = Ferrocable::Server.new(port: 0, worker_pool_size: 2).start
  end

  after(:all) { @server.stop }

  it "delivers what was broadcast while the client was away, in order, once, with positions" do
    script = File.join(ROOT, "spec", "support", "reliable_client.mjs")
    out = IO.popen(["node", script, "ws://127.0.0.1:#{@server.port}/cable", "reliable"],
                   err: %i[child out], &:read)
    expect($?.exitstatus).to eq(0), out
    result = JSON.parse(out.lines.last)
    expect(result["got"]).to eq((1..5).map { |n| { "text" => "m#{n}", "offset" => n, "stream" => "chat_reliable" } })
    expect(result["confirmed"]).to be(true)
  end
end

# Session restore in embedded mode: a client back with its sid gets its
# connection and channels without `connect` or `subscribed` (the dummy app
# records both), performs on them, and `unsubscribed`/`disconnect` run once,
# when the session finally ends.
RSpec.describe "session restore in embedded mode" do
  let(:script) { File.join(ROOT, "spec", "support", "restore_client.mjs") }

  def drain(queue)
    all = []
    all << queue.pop(true) until queue.empty?
    all
  end

  def expect_restored(result, room)
    first, second = result["welcomes"]
    expect(first["restored"]).to be_falsy
    expect(second).to include("restored" => true)
    expect(second["restored_ids"]).to eq([{ channel: "ChatChannel", room: room }.to_json])
    expect(second["sid"]).not_to eq(first["sid"])
    # Instance variables set in `subscribed` and `speak` came back.
    expect(result["history"]).to eq("said" => %w[before after], "room" => room)
    expect(result["texts"]).to eq(%w[before after])
  end

  it "after a network drop, in the same process: the connection object is taken over" do
    ttl = 8
    server = Ferrocable::Server.new(port: 0, worker_pool_size: 2, sessions_ttl: ttl, broker: "memory").start
    begin
      drain(events)
      out = IO.popen(["node", script, "ws://127.0.0.1:#{server.port}/cable", "drop", "drop", "dora"],
                     err: %i[child out], &:read)
      expect($?.exitstatus).to eq(0), out
      expect_restored(JSON.parse(out.lines.last), "drop")
      seen = []
      eventually { (seen.concat(drain(events))).include?([:disconnect, "dora"]) }
      # The first socket's Disconnect (parked for sessions_ttl) became the
      # restored session's: nothing more comes once the ttl has passed.
      sleep ttl + 2
      seen.concat(drain(events))
      expect(seen.select { |e| e[1] == "dora" }).to eq([[:connect, "dora"], [:subscribed, "dora", "drop"],
                                                      [:unsubscribed, "dora", "drop"], [:disconnect, "dora"]])
    ensure
      server.stop
    end
  end

  it "at shutdown with the memory broker, unsubscribed and disconnect run (no later process can restore it)" do
    server = Ferrocable::Server.new(port: 0, worker_pool_size: 2, sessions_ttl: 60, broker: "memory").start
    drain(events)
    client = ProcessChild.new(["node", script, "ws://127.0.0.1:#{server.port}/cable", "shut", "restart", "sam"])
    client.wait_for(/READY/, timeout: 60)
    server.stop
    server = nil
    seen = []
    eventually { (seen.concat(drain(events))).include?([:disconnect, "sam"]) }
    expect(seen.select { |e| e[1] == "sam" }).to eq([[:connect, "sam"], [:subscribed, "sam", "shut"],
                                                    [:unsubscribed, "sam", "shut"], [:disconnect, "sam"]])
  ensure
    client&.kill
    server&.stop
  end

  it "after the server process restarts (broker=redis): the connection is rebuilt from the stored identifiers" do
    require "redis_process"
    redis = RedisProcess.new
    events_file = File.join(Dir.tmpdir, "ferrocable-restore-events-#{Process.pid}")
    File.delete(events_file) if File.exist?(events_file)
    port = reserve_port
    env = { "ANYCABLE_PORT" => port.to_s, "ANYCABLE_BROKER" => "redis", "ANYCABLE_REDIS_URL" => redis.url,
            # broker=redis pairs with broadcasts that reach one node (redis
            # pub/sub is refused with it); this app broadcasts in process.
            "ANYCABLE_BROADCAST_ADAPTER" => "http", "ANYCABLE_HTTP_BROADCAST_PORT" => reserve_port.to_s,
            "DUMMY_LOG" => "/dev/stdout",
            "DUMMY_EVENTS" => events_file, "RUBYLIB" => File.join(ROOT, "lib") }
    server = -> { ProcessChild.new(["rake", "-f", File.join(DUMMY_DIR, "Rakefile"), "ferrocable:server"], env: env) }
    recorded = -> { File.exist?(events_file) ? File.readlines(events_file).map { |l| JSON.parse(l) } : [] }
    first = server.call
    first.wait_for(/listening on port #{port}/, timeout: 120)
    client = ProcessChild.new(["node", script, "ws://127.0.0.1:#{port}/cable", "restart", "restart", "rita"])
    client.wait_for(/READY/, timeout: 60)
    expect(first.terminate.exitstatus).to eq(0), first.output
    before = recorded.call
    expect(before).to eq([%w[connect rita], %w[subscribed rita restart]])

    second = server.call
    second.wait_for(/listening on port #{port}/, timeout: 120)
    client.input.puts("restarted")
    client.wait_for(/"welcomes"/, timeout: 60)
    expect(client.wait_exit(timeout: 60).exitstatus).to eq(0), client.output
    expect_restored(JSON.parse(client.output.lines.grep(/"welcomes"/).last), "restart")
    eventually(timeout: 60) { recorded.call.include?(%w[disconnect rita]) }
    expect(recorded.call).to eq([%w[connect rita], %w[subscribed rita restart],
                                 %w[unsubscribed rita restart], %w[disconnect rita]])
  ensure
    [client, first, second].compact.each(&:kill)
    redis&.stop
    File.delete(events_file) if events_file && File.exist?(events_file)
  end
end
