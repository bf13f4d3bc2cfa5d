# frozen_string_literal: true

$LOAD_PATH.unshift File.expand_path("../lib", __dir__)
$LOAD_PATH.unshift File.expand_path("support", __dir__)
ENV["RAILS_ENV"] ||= "test"

require "timeout"
require "socket"
require "net/http"
require_relative "dummy/config/environment"
# As `rake ferrocable:server` does: no autoloading (and its interlock) while serving.
Rails.application.eager_load!
require "ws_client"
require "ports"
require "process_child"
require "process_stats"
require "ferrocable_binary"
require "split_mode_examples"

ROOT = File.expand_path("..", __dir__)
DUMMY_DIR = File.join(ROOT, "spec", "dummy")

module CableHelpers
  # A port to tell a child process before it binds (see Ports); where the
  # child can bind port 0 and say which it got, prefer that.
  def reserve_port
    Ports.reserve
  end

  def cable_url(server, query = "")
    "ws://127.0.0.1:#{server.port}/cable#{query}"
  end

  def connect_as(server, name, query: "")
    client = WsClient.new(cable_url(server, query), headers: { "Cookie" => "user=#{name}" })
    client.welcome
    client
  end

  # A guest (`?guest=name`) welcomed and in the room "proc".
  def guest(port, name)
    client = WsClient.new("ws://127.0.0.1:#{port}/cable?guest=#{name}")
    client.welcome
    join(client, "proc")
    client
  end

  def chat(room)
    { channel: "ChatChannel", room: room }.to_json
  end

  # Subscribes and reads through the hello and the confirmation.
  def join(client, room)
    id = chat(room)
    client.subscribe(id)
    expect(client.receive["message"]).to include("hello")
    expect(client.receive).to eq("type" => "confirm_subscription", "identifier" => id)
    id
  end

  # Alice and Bob (cookies), welcomed and both in chat `room` at `url`;
  # returns them and the room's identifier.
  def alice_and_bob(url, room)
    alice = WsClient.new(url, headers: { "Cookie" => "user=alice" })
    expect(alice.welcome["sid"]).to be_a(String)
    bob = WsClient.new(url, headers: { "Cookie" => "user=bob" })
    bob.welcome
    id = join(alice, room)
    join(bob, room)
    [alice, bob, id]
  end

  def events
    ApplicationCable::Connection.events
  end

  # Waits for the dummy app to record `expected` (e.g. [:disconnect, "alice"]),
  # skipping events of other connections: an earlier example's clients may
  # still be disconnecting (their Disconnect calls are paced and run on the
  # worker pool). The bound is generous; a busy machine only makes it slower.
  def expect_event(*expected, timeout: 30)
    seen = []
    Timeout.timeout(timeout) do
      loop do
        event = events.pop
        return event if event == expected

        seen << event
      end
    end
  rescue Timeout::Error
    raise RSpec::Expectations::ExpectationNotMetError,
          "expected event #{expected.inspect} within #{timeout}s; saw #{seen.inspect}"
  end

  # Waits until TroubleChannel#held is running (it then waits for its gate).
  def wait_until_held(timeout: 30)
    Timeout.timeout(timeout) { TroubleChannel.holding.pop }
  end

  def eventually(timeout: 30)
    deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + timeout
    loop do
      return if yield
      raise "condition not met within #{timeout}s" if Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline

      sleep 0.02
    end
  end

  def http_get(port, path, headers = {})
    Net::HTTP.start("127.0.0.1", port) { |http| http.get(path, headers) }
  end

  def http_post(port, path, body, headers = {})
    Net::HTTP.start("127.0.0.1", port) { |http| http.post(path, body, headers) }
  end
end

RSpec.configure do |config|
  config.include CableHelpers
  config.around(:each) { |example| Timeout.timeout(example.metadata[:timeout] || 60) { example.run } }
  config.before(:suite) do
    User.delete_all
    %w[alice bob carol].each { |name| User.create!(name: name) }
  end
end
