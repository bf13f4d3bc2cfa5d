# frozen_string_literal: true

require "spec_helper"
require "tmpdir"
require "fileutils"

# The embedded server running the dummy app's real channel classes, driven
# by a real WebSocket client.
RSpec.describe "Ferrocable embedded in a Rails process" do
  before(:all) { @server = Ferrocable::Server.new(port: 0, worker_pool_size: 4).start }
  after(:all) { @server.stop }

  let(:server) { @server }

  before { events.clear }

  describe "connecting" do
    it "identifies the user from cookies and welcomes with a session id" do
      client = WsClient.new(cable_url(server), headers: { "Cookie" => "user=alice" })
      expect(client.protocol).to eq("actioncable-v1-json")
      welcome = client.welcome
      expect(welcome["sid"]).to match(/\A[A-Za-z0-9]{20}\z/)
      client.close
      expect_event(:disconnect, "alice")
    end

    it "rejects reject_unauthorized_connection with an unauthorized disconnect, then a close" do
      client = WsClient.new(cable_url(server), headers: { "Cookie" => "user=mallory" })
      expect(client.receive).to eq("type" => "disconnect", "reason" => "unauthorized", "reconnect" => false)
      expect(client.wait_closed).not_to be_nil
      # As in Action Cable, whose socket close runs handle_close for a
      # rejected connection too: `disconnect` runs, with no current_user.
      expect_event(:disconnect, nil)
    end

    # Action Cable logs the exception and never welcomes the client (whose
    # monitor reconnects later); Ferrocable says so: server_restart.
    it "asks a client whose connect raised to come back later, and keeps serving others" do
      client = WsClient.new(cable_url(server, "?boom=1"), headers: { "Cookie" => "user=alice" })
      expect(client.receive).to eq("type" => "disconnect", "reason" => "server_restart", "reconnect" => true)
      expect_event(:disconnect, nil)
      # An exception whose message is not UTF-8 is answered the same way.
      binary = WsClient.new(cable_url(server, "?binary_boom=1"), headers: { "Cookie" => "user=alice" })
      expect(binary.receive).to include("type" => "disconnect", "reason" => "server_restart")
      other = connect_as(server, "bob")
      join(other, "after-boom")
      other.close
    end

    it "gives the connection the request (params, headers)" do
      client = WsClient.new(cable_url(server, "?guest=visitor"))
      client.welcome
      join(client, "lobby")
      client.close
      expect_event(:disconnect, "visitor")
    end
  end

  describe "channels" do
    it "delivers transmissions from subscribed before the confirmation" do
      client = connect_as(server, "alice")
      id = chat("1")
      client.subscribe(id)
      expect(client.receive).to eq("identifier" => id, "message" => { "hello" => "alice" })
      expect(client.receive).to eq("identifier" => id, "type" => "confirm_subscription")
      client.close
    end

    it "keeps instance variables from subscribed in later actions" do
      client = connect_as(server, "alice")
      id = join(client, "ivars")
      client.perform(id, action: "speak", text: "one")
      client.receive
      client.perform(id, action: "speak", text: "two")
      client.receive
      client.perform(id, action: "history")
      expect(client.receive["message"]).to eq("said" => %w[one two], "room" => "ivars")
      client.close
    end

    it "broadcasts from Rails code to every subscriber" do
      alice = connect_as(server, "alice")
      bob = connect_as(server, "bob")
      id = join(alice, "2")
      join(bob, "2")
      alice.perform(id, action: "speak", text: "hi bob")
      [alice, bob].each do |c|
        expect(c.receive).to eq("identifier" => id, "message" => { "text" => "hi bob", "from" => "alice" })
      end
      ActionCable.server.broadcast("chat_2", { from: "rails" })
      expect(bob.receive["message"]).to eq("from" => "rails")
      [alice, bob].each(&:close)
    end

    it "delivers a broadcast made in subscribed to the subscriber's own new stream" do
      client = connect_as(server, "bob")
      lobby = { channel: "LobbyChannel" }.to_json
      client.subscribe(lobby)
      expect(client.receive).to eq("identifier" => lobby, "type" => "confirm_subscription")
      expect(client.receive).to eq("identifier" => lobby, "message" => { "joined" => "bob" })
      client.close
    end

    it "delivers what periodic timers transmit" do
      client = connect_as(server, "alice")
      ticker = { channel: "TickerChannel" }.to_json
      client.subscribe(ticker)
      expect(client.receive["type"]).to eq("confirm_subscription")
      expect(client.receive).to eq("identifier" => ticker, "message" => { "tick" => 1 })
      expect(client.receive).to eq("identifier" => ticker, "message" => { "tick" => 2 })
      client.send_json(command: "unsubscribe", identifier: ticker)
      # A marker sent after the unsubscribe: ticks already on their way arrive
      # before it; once it is here, the subscription (and its timer) is gone.
      room = chat("after-ticks")
      client.subscribe(room)
      loop { break if client.receive == { "type" => "confirm_subscription", "identifier" => room } }
      expect(client.silent?(0.6)).to be(true) # timers stop with the subscription
      client.close
    end

    it "queues callback-stream messages while the socket's own action runs, and delivers every one after" do
      client = connect_as(server, "alice")
      room = join(client, "callbacks")
      client.perform(room, action: "follow_with_callback", stream: "cb")
      trouble = { channel: "TroubleChannel" }.to_json
      client.subscribe(trouble)
      expect(client.receive["type"]).to eq("confirm_subscription")
      client.perform(trouble, action: "held")
      wait_until_held
      300.times { |i| ActionCable.server.broadcast("cb", { n: i }) }
      TroubleChannel.gate << :open
      expect(client.receive(timeout: 30)["message"]).to eq("held" => "released")
      300.times { |i| expect(client.receive(timeout: 30)["message"]).to eq("via_callback" => { "n" => i }) }
      client.close
    end

    it "supports stream_for with a record, stop_stream_from and stop_all_streams" do
      client = connect_as(server, "carol")
      id = join(client, "3")
      client.perform(id, action: "follow_me")
      client.perform(id, action: "follow", stream: "news")
      sleep 0.2
      ChatChannel.broadcast_to(User.find_by!(name: "carol"), { personal: true })
      expect(client.receive["message"]).to eq("personal" => true)
      ActionCable.server.broadcast("news", { n: 1 })
      expect(client.receive["message"]).to eq("n" => 1)
      client.perform(id, action: "unfollow", stream: "news")
      sleep 0.2
      ActionCable.server.broadcast("news", { n: 2 })
      ActionCable.server.broadcast("chat_3", { still: "here" })
      expect(client.receive["message"]).to eq("still" => "here")
      client.perform(id, action: "leave")
      sleep 0.2
      ActionCable.server.broadcast("chat_3", { gone: true })
      expect(client.silent?(0.3)).to be(true)
      client.close
    end

    it "rejects a subscription the channel rejects; an unknown channel gets no answer, as in Action Cable" do
      client = connect_as(server, "alice")
      client.subscribe(chat("secret"))
      # As in Action Cable, what `subscribed` transmitted before `reject` is sent too.
      expect(client.receive["message"]).to eq("hello" => "alice")
      expect(client.receive).to eq("identifier" => chat("secret"), "type" => "reject_subscription")
      unknown = { channel: "NoSuchChannel" }.to_json
      client.subscribe(unknown)
      # Action Cable only logs "Subscription class not found": the next
      # message is the next subscription's.
      join(client, "4")
      client.close
      # Its Disconnect call (paced by disconnect_rate) runs before the next example reads events.
      expect_event(:disconnect, "alice")
    end

    it "runs unsubscribed on unsubscribe and on disconnect" do
      client = connect_as(server, "alice")
      id = join(client, "5")
      client.send_json(command: "unsubscribe", identifier: id)
      expect_event(:unsubscribed, "alice", "5")
      join(client, "6")
      client.close
      expect_event(:unsubscribed, "alice", "6")
      expect_event(:disconnect, "alice")
    end

    it "lets a channel close the connection" do
      client = connect_as(server, "alice")
      id = join(client, "7")
      client.perform(id, action: "kick")
      expect(client.receive).to eq("type" => "disconnect", "reason" => "remote", "reconnect" => false)
      expect(client.wait_closed).not_to be_nil
    end
  end

  describe "errors in channel code" do
    let(:trouble) { { channel: "TroubleChannel" }.to_json }

    it "logs a subscribed that raises (no confirmation, as in Action Cable); the connection keeps working" do
      client = connect_as(server, "alice")
      id = { channel: "TroubleChannel", in: "subscribed" }.to_json
      client.subscribe(id)
      join(client, "8") # the next message is the next subscription's
      client.close
    end

    it "logs an exception in an action and keeps serving; rescue_from handlers run" do
      client = connect_as(server, "alice")
      client.subscribe(trouble)
      expect(client.receive["type"]).to eq("confirm_subscription")
      client.perform(trouble, action: "explode")
      client.perform(trouble, action: "rescued")
      expect(client.receive["message"]).to eq("rescued" => "rescued by rescue_from")
      id = join(client, "9")
      client.perform(id, action: "history")
      expect(client.receive["message"]).to include("room" => "9")
      client.close
    end

    it "survives an exception in unsubscribed" do
      client = connect_as(server, "alice")
      id = { channel: "TroubleChannel", in: "unsubscribed" }.to_json
      client.subscribe(id)
      expect(client.receive["type"]).to eq("confirm_subscription")
      client.send_json(command: "unsubscribe", identifier: id)
      join(client, "10")
      client.close
    end
  end

  # Action Cable puts no time limit on channel code: a slow action completes
  # and its transmission is delivered; meanwhile the other workers serve
  # everyone else, and the slow call is visible (a metric, a warning).
  it "lets a slow action finish (no time cap) while the other workers keep serving, and counts it" do
    slow = Ferrocable::Server.new(port: 0, worker_pool_size: 2, rpc_request_timeout: 100,
                                  slow_call_threshold: 100, metrics_http: "/metrics").start
    begin
      stuck = connect_as(slow, "alice")
      trouble = { channel: "TroubleChannel" }.to_json
      stuck.subscribe(trouble)
      expect(stuck.receive["type"]).to eq("confirm_subscription")
      stuck.perform(trouble, action: "held")
      wait_until_held
      # One worker is held in the action (until the gate opens); the other
      # serves everyone else.
      other = connect_as(slow, "bob")
      join(other, "busy")
      other.perform(chat("busy"), action: "history")
      expect(other.receive["message"]).to include("room" => "busy")
      eventually(timeout: 30) do
        http_get(slow.port, "/metrics").body.include?("ferrocable_slow_calls_total 1")
      end
      TroubleChannel.gate << :open
      expect(stuck.receive(timeout: 30)["message"]).to eq("held" => "released")
      stuck.subscribe(chat("after"))
      expect(stuck.receive["message"]).to eq("hello" => "alice")
      [stuck, other].each(&:close)
    ensure
      slow.stop
    end
  end

  # The call metrics are counted around every controller: embedded calls
  # show as the binary's RPC calls do.
  it "counts its application calls and their errors in the metrics" do
    metered = Ferrocable::Server.new(port: 0, worker_pool_size: 2, metrics_http: "/metrics").start
    begin
      client = connect_as(metered, "alice")
      join(client, "metered")
      client.close
      failed = WsClient.new(cable_url(metered, "?boom=1"), headers: { "Cookie" => "user=alice" })
      expect(failed.receive).to include("type" => "disconnect", "reason" => "server_restart")
      # connect, subscribe and disconnect for alice; the connect that raised.
      eventually(timeout: 30) do
        body = http_get(metered.port, "/metrics").body
        body.include?("ferrocable_rpc_call_total 4\n") && body.include?("ferrocable_rpc_error_total 1\n")
      end
    ensure
      metered.stop
    end
  end

  it "runs the app's middleware, then Action Cable, on a path the app does not route to Action Cable" do
    other = Ferrocable::Server.new(port: 0, worker_pool_size: 2, path: "/cable,/elsewhere").start
    begin
      client = WsClient.new("ws://127.0.0.1:#{other.port}/elsewhere", headers: { "Cookie" => "user=bob" })
      client.welcome
      join(client, "elsewhere")
      client.close
    ensure
      other.stop
    end
  end

  describe "remote connections" do
    it "disconnects every session of a user with remote_connections.where(...).disconnect" do
      alice1 = connect_as(server, "alice")
      alice2 = connect_as(server, "alice")
      bob = connect_as(server, "bob")
      join(bob, "11")
      ActionCable.server.remote_connections.where(current_user: User.find_by!(name: "alice")).disconnect
      [alice1, alice2].each do |c|
        expect(c.receive).to eq("type" => "disconnect", "reason" => "remote", "reconnect" => true)
        expect(c.wait_closed).not_to be_nil
      end
      ActionCable.server.broadcast("chat_11", { bob: "still here" })
      expect(bob.receive["message"]).to eq("bob" => "still here")
      bob.close
    end
  end

  describe "TLS (ssl_cert, ssl_key)" do
    # A self-signed certificate for localhost, made for this run.
    before(:all) do
      @tls_dir = Dir.mktmpdir("ferrocable-tls")
      key = OpenSSL::PKey::EC.generate("prime256v1")
      cert = OpenSSL::X509::Certificate.new
      cert.version = 2
      cert.serial = 1
      cert.subject = cert.issuer = OpenSSL::X509::Name.parse("/CN=localhost")
      cert.public_key = key
      cert.not_before = Time.now - 60
      cert.not_after = Time.now + 3600
      extensions = OpenSSL::X509::ExtensionFactory.new(cert, cert)
      cert.add_extension(extensions.create_extension("subjectAltName", "DNS:localhost,IP:127.0.0.1"))
      cert.sign(key, OpenSSL::Digest.new("SHA256"))
      @cert_path = File.join(@tls_dir, "cert.pem")
      @key_path = File.join(@tls_dir, "key.pem")
      File.write(@cert_path, cert.to_pem)
      File.write(@key_path, key.to_pem)
      @tls = Ferrocable::Server.new(port: 0, worker_pool_size: 2, ssl_cert: @cert_path, ssl_key: @key_path).start
    end

    after(:all) do
      @tls&.stop
      FileUtils.rm_rf(@tls_dir)
    end

    let(:trusting) do
      OpenSSL::SSL::SSLContext.new.tap do |context|
        context.ca_file = @cert_path
        context.verify_mode = OpenSSL::SSL::VERIFY_PEER
      end
    end

    def wss(user)
      WsClient.new("wss://localhost:#{@tls.port}/cable", headers: { "Cookie" => "user=#{user}" }, ssl_context: trusting)
    end

    it "serves wss:// with the app's channels and /health over TLS; plaintext gets no answer" do
      alice = wss("alice")
      expect(alice.welcome["sid"]).to match(/\A[A-Za-z0-9]{20}\z/)
      join(alice, "tls")
      ActionCable.server.broadcast("chat_tls", { text: "over tls" })
      expect(alice.receive["message"]).to eq("text" => "over tls")

      expect { WsClient.new("ws://127.0.0.1:#{@tls.port}/cable", headers: { "Cookie" => "user=bob" }) }
        .to raise_error(WsClient::Refused)
      health = Net::HTTP.start("localhost", @tls.port, use_ssl: true, ca_file: @cert_path) { |h| h.get("/health") }
      expect(health.code).to eq("200")
      bob = wss("bob")
      expect(bob.welcome).to include("type" => "welcome")
      [alice, bob].each(&:close)
    end

    it "refuses to start with a key file that cannot be read, naming it" do
      missing = File.join(@tls_dir, "missing.pem")
      expect { Ferrocable::Server.new(port: 0, worker_pool_size: 1, ssl_cert: @cert_path, ssl_key: missing).start }
        .to raise_error(Ferrocable::Error, /ssl_key #{Regexp.escape(missing)}/)
    end
  end

  it "shuts down gracefully: server_restart for clients, disconnect callbacks run" do
    other = Ferrocable::Server.new(port: 0, worker_pool_size: 2).start
    client = connect_as(other, "alice")
    join(client, "12")
    events.clear
    expect(other.stop).to be(true)
    expect(client.receive).to eq("type" => "disconnect", "reason" => "server_restart", "reconnect" => true)
    expect(client.wait_closed).to eq(1001)
    expect_event(:disconnect, "alice")
  end
end
