# frozen_string_literal: true

require "spec_helper"
require "action_cable/subscription_adapter/async"

# Whatever config/cable.yml names, nothing is lost: with one of Action
# Cable's own adapters, streams with subscribers here are watched on it and
# its broadcasts reach Ferrocable's clients (StreamRelay); behind the RPC
# server, where they could not, the server refuses to start. (The fidelity
# suite runs the same with `adapter: redis` and a real redis-server.)
RSpec.describe "config/cable.yml with one of Action Cable's own adapters" do
  around do |example|
    previous = ActionCable.server.instance_variable_get(:@pubsub)
    adapter = ActionCable::SubscriptionAdapter::Async.new(ActionCable.server)
    ActionCable.server.instance_variable_set(:@pubsub, adapter)
    example.run
  ensure
    adapter&.shutdown
    ActionCable.server.instance_variable_set(:@pubsub, previous)
  end

  it "relays broadcasts through the adapter (async) to subscribers, once, and lets go of a stream with none" do
    server = Ferrocable::Server.new(port: 0, worker_pool_size: 2).start
    begin
      relay = server.handler.instance_variable_get(:@cable_server).pubsub.instance_variable_get(:@relay)
      expect(relay.adapter).to be(ActionCable.server.pubsub)
      alice = connect_as(server, "alice")
      bob = connect_as(server, "bob")
      join(alice, "relay")
      join(bob, "relay")
      expect(relay.streams).to eq(["chat_relay"])
      ActionCable.server.broadcast("chat_relay", { text: "through async" })
      [alice, bob].each do |client|
        expect(client.receive["message"]).to eq("text" => "through async")
      end
      # Exactly once: the next message each sees is the next broadcast.
      ActionCable.server.broadcast("chat_relay", { text: "second" })
      [alice, bob].each { |client| expect(client.receive["message"]).to eq("text" => "second") }
      [alice, bob].each(&:close)
      eventually { relay.streams.empty? }
    ensure
      server.stop
    end
  end

  it "moves the streams to the adapter Action Cable rebuilds when it restarts (before a code reload)" do
    previous_cable = ActionCable.server.config.cable
    ActionCable.server.config.cable = { "adapter" => "async" }
    server = Ferrocable::Server.new(port: 0, worker_pool_size: 2).start
    begin
      alice = connect_as(server, "alice")
      join(alice, "restart")
      old = ActionCable.server.pubsub
      ActionCable.server.restart
      expect(ActionCable.server.pubsub).not_to be(old)
      ActionCable.server.broadcast("chat_restart", { text: "after the restart" })
      expect(alice.receive["message"]).to eq("text" => "after the restart")
      alice.close
    ensure
      server.stop
      ActionCable.server.pubsub.shutdown
      ActionCable.server.config.cable = previous_cable
    end
  end

  it "refuses to start the RPC server, saying what to change" do
    expect { Ferrocable::Server.new({ rpc_host: "127.0.0.1:0" }, mode: :rpc) }
      .to raise_error(Ferrocable::ConfigError, /cable\.yml uses Async.*adapter: ferrocable/m)
  end
end
