# frozen_string_literal: true

require "spec_helper"
require "ferrocable_binary"

# Presence from channel code (Ferrocable::Presence, anycable-rails' API) in
# the dummy app's PresenceChannel, driven by the real extension: embedded,
# and behind the ferrocable binary through the gem's RPC server (what
# `rake ferrocable:rpc` runs; the reply's `presence` field). A raw client
# on actioncable-v1-ext-json sees the events; the official @anycable/core
# client reads the set (`presence` command) and leaves from an action.
RSpec.shared_examples "presence from channel code" do
  it "joins on subscribe with id and info, leaves from an action and on unsubscribe" do
    room = "p#{rand(1 << 30)}"
    id = { channel: "PresenceChannel", room: room }.to_json
    alice = WsClient.new("#{url}?guest=alice", protocols: ["actioncable-v1-ext-json"])
    alice.welcome
    alice.subscribe(id)
    expect(alice.receive).to eq("type" => "confirm_subscription", "identifier" => id)
    expect(alice.receive).to eq("type" => "presence", "identifier" => id,
                                "message" => { "type" => "join", "id" => "u-alice", "info" => { "name" => "alice" } })

    script = File.join(ROOT, "spec", "support", "presence_client.mjs")
    out = IO.popen(["node", script, url, room], err: %i[child out], &:read)
    expect($?.exitstatus).to eq(0), out
    bob = JSON.parse(out.lines.last)
    expect(bob["seen"]).to eq("u-alice" => { "name" => "alice" }, "u-bob" => { "name" => "bob" })
    expect(bob["events"]).to include("type" => "leave", "id" => "u-bob")

    expect(alice.receive["message"]).to eq("type" => "join", "id" => "u-bob", "info" => { "name" => "bob" })
    expect(alice.receive["message"]).to eq("type" => "leave", "id" => "u-bob")

    # Actions leave, and join again with another id and a String info (one
    # id per session and stream: the broker refuses another while joined).
    alice.perform(id, action: "leave")
    expect(alice.receive["message"]).to eq("type" => "leave", "id" => "u-alice")
    alice.perform(id, action: "rejoin", id: "u-alice-2", info: "away")
    expect(alice.receive["message"]).to eq("type" => "join", "id" => "u-alice-2", "info" => "away")

    carol = WsClient.new("#{url}?guest=carol", protocols: ["actioncable-v1-ext-json"])
    carol.welcome
    carol.subscribe(id)
    expect(carol.receive["type"]).to eq("confirm_subscription")
    expect(carol.receive["message"]).to include("type" => "join", "id" => "u-carol")
    expect(alice.receive["message"]).to include("type" => "join", "id" => "u-carol")
    alice.send_json(command: "unsubscribe", identifier: id)
    expect(carol.receive["message"]).to eq("type" => "leave", "id" => "u-alice-2")
    [alice, carol].each(&:close)
  end
end

RSpec.describe "Presence from channel code" do
  before(:all) do
    e2e = File.join(ROOT, "tests", "e2e")
    unless File.directory?(File.join(e2e, "node_modules", "@anycable", "core"))
      system("npm", "ci", "--silent", "--no-audit", "--no-fund", chdir: e2e, exception: true)
    end
  end

  describe "embedded" do
    before(:all) { @server = Ferrocable::Server.new(port: 0, worker_pool_size: 2).start }
    after(:all) { @server.stop }

    let(:url) { "ws://127.0.0.1:#{@server.port}/cable" }

    include_examples "presence from channel code"
  end

  describe "behind the binary, through the gem's RPC server" do
    before(:all) do
      @rpc = Ferrocable::Server.new({ rpc_host: "127.0.0.1:0" }, mode: :rpc, worker_pool_size: 4).start
      @binary, @ws_port = FerrocableBinary.start("--rpc_host=127.0.0.1:#{@rpc.port}", "--broadcast_adapter=http",
                                                 "--http_broadcast_port=#{reserve_port}")
    end

    after(:all) do
      @binary.terminate
      @rpc.stop
    end

    let(:url) { "ws://127.0.0.1:#{@ws_port}/cable" }

    include_examples "presence from channel code"
  end
end
