# frozen_string_literal: true

require "spec_helper"
require "puma"
require "openssl"

# Split mode over HTTP RPC: the standalone ferrocable binary in front, this
# Rails app serving the RPC calls from a Rack endpoint (Ferrocable::HTTPRPC),
# the same channel classes behind it as behind the gRPC server.
RSpec.describe Ferrocable::HTTPRPC do
  HTTP_RPC_TOKEN = "the-http-rpc-token"

  # The endpoint under a real Puma server in this process, at /_anycable.
  def serve(endpoint)
    app = Rack::Builder.new { map("/_anycable") { run endpoint } }
    server = Puma::Server.new(app, Puma::Events.strings, min_threads: 1, max_threads: 4)
    server.add_tcp_listener("127.0.0.1", 0)
    server.run
    server
  end

  def post(port, path, body, headers = {})
    http_post(port, path, body, { "Content-Type" => "application/json" }.merge(headers))
  end

  context "behind the binary" do
    before(:all) do
      broadcast_port = reserve_port # keyless HTTP broadcasts never share the WebSocket port
      @puma = serve(described_class.new(secret: HTTP_RPC_TOKEN))
      @http_port = @puma.connected_ports.first
      @binary, @ws_port = FerrocableBinary.start("--rpc_host=http://127.0.0.1:#{@http_port}/_anycable",
                                                 "--http_rpc_secret=#{HTTP_RPC_TOKEN}", "--broadcast_adapter=http",
                                                 "--http_broadcast_port=#{broadcast_port}")
      @saved = Ferrocable.config.options.dup
      Ferrocable.config.merge!(broadcast_adapter: "http",
                               http_broadcast_url: "http://127.0.0.1:#{broadcast_port}/_broadcast")
    end

    after(:all) do
      @binary.terminate
      @puma.stop(true)
      Ferrocable.config.options.replace(@saved)
    end

    let(:url) { "ws://127.0.0.1:#{@ws_port}/cable" }

    before { events.clear }

    let(:room) { "http" }

    include_examples "the app behind the binary"

    it "refuses a call without the token, and a binary with the wrong one welcomes no one" do
      body = { env: { url: "ws://x/cable", headers: { cookie: "user=alice" } } }.to_json
      expect(post(@http_port, "/_anycable/connect", body).code).to eq("401")
      expect(post(@http_port, "/_anycable/connect", body, "Authorization" => "Bearer wrong").code).to eq("401")
      FerrocableBinary.run("--rpc_host=http://127.0.0.1:#{@http_port}/_anycable", "--rpc_impl=http",
                           "--http_rpc_secret=wrong", "--broadcast_adapter=http",
                           "--http_broadcast_port=#{reserve_port}") do |binary, port|
        client = WsClient.new("ws://127.0.0.1:#{port}/cable", headers: { "Cookie" => "user=alice" })
        expect(client.receive).to eq("type" => "disconnect", "reason" => "server_restart", "reconnect" => true)
        binary.wait_for(/connect call failed.*401 Unauthorized/)
      end
    end

    it "answers bad requests as AnyCable's endpoint does" do
      auth = { "Authorization" => "Bearer #{HTTP_RPC_TOKEN}" }
      expect(post(@http_port, "/_anycable/connect", "", auth).code).to eq("422")
      expect(post(@http_port, "/_anycable/connect", "not json", auth).code).to eq("422")
      bad = post(@http_port, "/_anycable/command", { command: "dance" }.to_json, auth)
      expect([bad.code, bad.body]).to eq(["422", "Invalid request body: unknown command \"dance\""])
      expect(post(@http_port, "/_anycable/stream", "{}", auth).code).to eq("404")
      expect(http_get(@http_port, "/_anycable/connect", auth).code).to eq("404")
      ok = post(@http_port, "/_anycable/connect", { env: { url: "ws://x/cable", headers: { cookie: "user=bob" } } }.to_json,
                auth.merge("X-Anycable-Meta-Sid" => "s1"))
      expect(ok.code).to eq("200")
      expect(JSON.parse(ok.body)).to include("status" => 1, "transmissions" => [{ type: "welcome" }.to_json])
      expect(JSON.parse(ok.body)["identifiers"]).to include("gid://")
    end
  end

  describe "its token" do
    around do |example|
      saved = Ferrocable.config
      Ferrocable.config = Ferrocable::Config.new(saved.options.slice(:host))
      example.run
    ensure
      Ferrocable.config = saved
    end

    it "is the one derived from secret, as the binary derives it" do
      Ferrocable.config.merge!(secret: "app-secret")
      expect(Ferrocable.config.http_rpc_secret).to eq(OpenSSL::HMAC.hexdigest("SHA256", "app-secret", "rpc-cable"))
      Ferrocable.config.merge!(http_rpc_secret: "explicit")
      expect(Ferrocable.config.http_rpc_secret).to eq("explicit")
    end

    it "must be set: without one the endpoint is not built, unless http_rpc_secret is none" do
      expect { described_class.new }.to raise_error(Ferrocable::ConfigError, /http_rpc_secret/)
      Ferrocable.config.merge!(http_rpc_secret: "none")
      expect(described_class.new).to be_a(described_class)
    end

    it "is where the Railtie mounts the endpoint: http_rpc, http_rpc_mount_path" do
      expect(Ferrocable.config.http_rpc_mount_path).to be_nil
      Ferrocable.config.merge!(http_rpc: true)
      expect(Ferrocable.config.http_rpc_mount_path).to eq("/_anycable")
      Ferrocable.config.merge!(http_rpc_mount_path: "/rpc")
      expect(Ferrocable.config.http_rpc_mount_path).to eq("/rpc")
    end
  end

  # A process with http_rpc on but no secret (an image build running
  # assets:precompile, a worker) still boots; the endpoint refuses to serve.
  it "lets an app with http_rpc and no secret boot, and refuses calls until a token is set", timeout: 240 do
    env = { "ANYCABLE_HTTP_RPC" => "true", "RUBYLIB" => File.join(ROOT, "lib") }
    code = <<~RUBY
      require #{File.join(DUMMY_DIR, "config", "environment").inspect}
      status, = Rails.application.call(Rack::MockRequest.env_for("/_anycable/connect", method: "POST", input: "{}"))
      puts "BOOTED \#{status}"
    RUBY
    ProcessChild.run(ProcessChild.ruby(code), env: env) do |runner|
      expect(runner.wait_for(/^BOOTED (\d+)$/, timeout: 120)[1]).to eq("500")
    end
  end

  # The Railtie's route in a Rails app booted as a deployment boots it
  # (`http_rpc: true` and `secret` from ANYCABLE_* variables), under Puma.
  it "is mounted by the Railtie at /_anycable with http_rpc", timeout: 240 do
    events_file = File.join(Dir.tmpdir, "ferrocable-httprpc-events-#{Process.pid}")
    File.delete(events_file) if File.exist?(events_file)
    broadcast_port = reserve_port
    http_port = reserve_port
    env = {
      "ANYCABLE_HTTP_RPC" => "true", "ANYCABLE_SECRET" => "app-secret",
      "ANYCABLE_BROADCAST_ADAPTER" => "http",
      "ANYCABLE_HTTP_BROADCAST_URL" => "http://127.0.0.1:#{broadcast_port}/_broadcast",
      "RUBYLIB" => File.join(ROOT, "lib"), "DUMMY_EVENTS" => events_file
    }
    rails = ProcessChild.new(["puma", "-t", "1:4", "-b", "tcp://127.0.0.1:#{http_port}",
                              File.join(DUMMY_DIR, "config.ru")], env: env)
    rails.wait_for(/Use Ctrl-C to stop/, timeout: 120)
    FerrocableBinary.run("--rpc_host=http://127.0.0.1:#{http_port}/_anycable", "--secret=app-secret",
                         "--broadcast_adapter=http", "--http_broadcast_port=#{broadcast_port}") do |_, port|
      # A guest: the child's database has no users.
      alice = WsClient.new("ws://127.0.0.1:#{port}/cable?guest=alice")
      alice.welcome
      id = join(alice, "railtie")
      alice.perform(id, action: "speak", text: "mounted")
      expect(alice.receive).to eq("identifier" => id, "message" => { "text" => "mounted", "from" => "alice" })
      alice.close
      eventually(timeout: 60) do
        File.exist?(events_file) && File.readlines(events_file).map { |l| JSON.parse(l) }.include?(%w[disconnect alice])
      end
    end
    expect(post(http_port, "/_anycable/connect", "{}", "Authorization" => "Bearer wrong").code).to eq("401")
  ensure
    rails&.kill
    File.delete(events_file) if events_file && File.exist?(events_file)
  end
end
