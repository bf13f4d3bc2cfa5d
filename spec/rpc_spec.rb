# frozen_string_literal: true

require "spec_helper"

# Split mode: the standalone ferrocable binary in front, this Rails process
# serving anycable.RPC (what `rake ferrocable:rpc` runs), the same channel
# classes behind it, stateless as AnyCable's RPC is.
RSpec.describe "The gem's RPC server behind the ferrocable binary" do
  before(:all) do
    broadcast_port = reserve_port # keyless HTTP broadcasts never share the WebSocket port
    @rpc = Ferrocable::Server.new({ rpc_host: "127.0.0.1:0" }, mode: :rpc, worker_pool_size: 4).start
    @binary, @ws_port = FerrocableBinary.start("--rpc_host=127.0.0.1:#{@rpc.port}", "--broadcast_adapter=http",
                                               "--http_broadcast_port=#{broadcast_port}")
    @saved = Ferrocable.config.options.dup
    Ferrocable.config.merge!(broadcast_adapter: "http",
                             http_broadcast_url: "http://127.0.0.1:#{broadcast_port}/_broadcast")
  end

  after(:all) do
    @binary.terminate
    @rpc.stop
    Ferrocable.config.options.replace(@saved)
  end

  let(:url) { "ws://127.0.0.1:#{@ws_port}/cable" }

  before { events.clear }

  let(:room) { "rpc" }

  include_examples "the app behind the binary"

  it "answers an exception in an action per protocol and keeps serving" do
    client = WsClient.new(url, headers: { "Cookie" => "user=carol" })
    client.welcome
    trouble = { channel: "TroubleChannel" }.to_json
    client.subscribe(trouble)
    expect(client.receive["type"]).to eq("confirm_subscription")
    client.perform(trouble, action: "explode")
    client.perform(trouble, action: "rescued")
    expect(client.receive["message"]).to eq("rescued" => "rescued by rescue_from")
    client.close
  end
end
