# frozen_string_literal: true

require "spec_helper"
require "ferrocable_binary"

# The fast lane from Ruby: the helpers' tokens and signed names are what
# the server verifies, signed streams and whispers in the embedded server
# (the dummy app's TypingChannel: `stream_from ..., whisper: true`), and
# JWT identification in the binary with a token minted by the gem.
RSpec.describe "The fast lane" do
  let(:config) { Ferrocable::Config.new(secret: "fast-lane-secret") }

  describe "helpers" do
    it "signs stream names as Rails' MessageVerifier (JSON, SHA256) does" do
      verifier = ActiveSupport::MessageVerifier.new("fast-lane-secret", digest: "SHA256", serializer: JSON)
      signed = Ferrocable::FastLane.signed_stream_name(config, "posts:1")
      expect(signed).to eq(verifier.generate("posts:1"))
      expect(verifier.verified(Ferrocable::FastLane.signed_stream_name(config, ["board", 7]))).to eq("board:7")
    end

    it "refuses to sign or mint without a key" do
      none = Ferrocable::Config.new(secret: "none")
      expect { Ferrocable::FastLane.signed_stream_name(none, "x") }.to raise_error(Ferrocable::ConfigError)
      expect { Ferrocable::FastLane.jwt_token(none, user: "x") }.to raise_error(Ferrocable::ConfigError)
    end
  end

  describe "in the embedded server" do
    before(:all) do
      @server = Ferrocable::Server.new(port: 0, worker_pool_size: 2, secret: "fast-lane-secret").start
    end
    after(:all) { @server.stop }

    let(:server) { @server }

    it "confirms a signed stream itself and delivers its broadcasts; rejects a forged one" do
      client = connect_as(server, "alice")
      id = { channel: "$pubsub", signed_stream_name: Ferrocable::FastLane.signed_stream_name(config, "news") }.to_json
      client.subscribe(id)
      expect(client.receive).to eq("type" => "confirm_subscription", "identifier" => id)
      ActionCable.server.broadcast("news", { headline: "fast" })
      expect(client.receive).to eq("identifier" => id, "message" => { "headline" => "fast" })
      forged = { channel: "$pubsub", signed_stream_name: "Im5ld3Mi--#{'0' * 64}" }.to_json
      client.subscribe(forged)
      expect(client.receive).to eq("type" => "reject_subscription", "identifier" => forged)
      client.close
    end

    it "identifies a JWT connection without the app's connect, and refuses bad tokens before Ruby" do
      events.clear
      token = Ferrocable::FastLane.jwt_token(config, current_user: "jwt-guest")
      client = WsClient.new(cable_url(server, "?jid=#{token}"))
      expect(client.welcome["sid"]).to be_a(String)
      # The channels see the identifiers (ChatChannel's hello is user_name).
      id = chat("jwt")
      client.subscribe(id)
      expect(client.receive["message"]).to eq("hello" => "jwt-guest")
      expect(client.receive).to eq("type" => "confirm_subscription", "identifier" => id)
      client.close
      expect_event(:disconnect, "jwt-guest")

      expired = Ferrocable::FastLane.jwt_token(config, expires_in: -30, current_user: "x")
      client = WsClient.new(cable_url(server, "?jid=#{expired}&boom=1"))
      # `boom` would make the app's connect raise: it is never run.
      expect(client.receive).to eq("type" => "disconnect", "reason" => "token_expired", "reconnect" => false)
    end

    it "delivers whispers of `stream_from ..., whisper: true` to the others only" do
      alice = connect_as(server, "alice")
      bob = connect_as(server, "bob")
      carol = connect_as(server, "carol")
      room = { channel: "TypingChannel", room: "1" }.to_json
      other = { channel: "TypingChannel", room: "2" }.to_json
      [[alice, room], [bob, room], [carol, other]].each do |client, id|
        client.subscribe(id)
        expect(client.receive).to eq("type" => "confirm_subscription", "identifier" => id)
      end
      alice.send_json(command: "whisper", identifier: room, data: { typing: "alice" })
      expect(bob.receive).to eq("identifier" => room, "message" => { "typing" => "alice" })
      expect(alice.silent?(0.3)).to be(true)
      expect(carol.silent?(0.3)).to be(true)
      [alice, bob, carol].each(&:close)
    end
  end

  describe "JWT identification in the binary" do
    it "welcomes a token from Ferrocable.jwt_token without the application, refuses an expired one" do
      FerrocableBinary.run("--secret=fast-lane-secret", "--enforce_jwt", "--broadcast_adapter=http",
                           "--rpc_host=127.0.0.1:1") do |_child, port|
        token = Ferrocable::FastLane.jwt_token(config, user: "alice")
        client = WsClient.new("ws://127.0.0.1:#{port}/cable?jid=#{token}")
        expect(client.welcome["type"]).to eq("welcome")
        client.close
        expired = Ferrocable::FastLane.jwt_token(config, expires_in: -30, user: "alice")
        client = WsClient.new("ws://127.0.0.1:#{port}/cable", headers: { "X-JID" => expired })
        expect(client.receive).to eq("type" => "disconnect", "reason" => "token_expired", "reconnect" => false)
      end
    end
  end
end
