# frozen_string_literal: true

require "spec_helper"

# One configuration path: the options set in Ruby (config/ferrocable.yml,
# config.ferrocable, code) go to the core, which resolves the rest
# (ANYCABLE_* variables, defaults, the broadcast key and URL); the server
# and the broadcaster both use that resolution.
RSpec.describe Ferrocable::Config do
  def with_env(vars)
    saved = vars.keys.to_h { |k| [k, ENV[k]] }
    vars.each { |k, v| ENV[k] = v }
    yield
  ensure
    saved.each { |k, v| ENV[k] = v }
  end

  it "takes options set in Ruby, then ANYCABLE_* variables, then the gem's and anycable-go's defaults" do
    with_env("ANYCABLE_REDIS_CHANNEL" => "from_env", "ANYCABLE_PORT" => "9100") do
      config = described_class.new(port: 9200, worker_pool_size: 3)
      expect(config[:port]).to eq(9200)
      expect(config[:redis_channel]).to eq("from_env")
      expect(config[:rpc_concurrency]).to eq(3)
      expect(config.broadcast_adapters).to eq(["http"])
      expect(config[:health_path]).to eq("/health")
      expect(config.broadcast_key).to be_nil
    end
  end

  it "takes the broker's options (reliable streams) as the binary does, and refuses a broker it does not have" do
    config = described_class.new(broker: "redis", history_limit: 10, history_ttl: 60, sessions_ttl: 0,
                                 pong_timeout: 5, ping_timestamp_precision: "ms")
    expect(config[:broker]).to eq("redis")
    expect([config[:history_limit], config[:history_ttl], config[:sessions_ttl]]).to eq([10, 60, 0])
    expect([config[:pong_timeout], config[:ping_timestamp_precision]]).to eq([5, "ms"])
    expect { described_class.new(broker: "carrier_pigeon")[:broker] }.to raise_error(Ferrocable::ConfigError, /broker/)
  end

  it "resolves again when options change" do
    config = described_class.new
    expect(config[:port]).to eq(8080)
    config.options[:port] = 8081
    expect(config[:port]).to eq(8081)
  end

  it "derives the broadcast key from secret in the core, under each of its names" do
    derived = described_class.new(secret: "s3cret").broadcast_key
    expect(derived).to match(/\A\h{64}\z/)
    expect(described_class.new(secret: "s3cret", broadcast_key: "k").broadcast_key).to eq("k")
    expect(described_class.new(http_broadcast_secret: "old", broadcast_key: "k").broadcast_key).to eq("old")
    with_env("ANYCABLE_SECRET" => "s3cret") { expect(described_class.new.broadcast_key).to eq(derived) }
  end

  it "names a key that is not an option, and refuses a security option it does not implement" do
    expect { described_class.new(no_such_option: 1).resolved }
      .to raise_error(Ferrocable::ConfigError, /\Aunexpected argument '--no_such_option' found/)
    expect { described_class.new(enforce_jwt: true).resolved }
      .to raise_error(Ferrocable::ConfigError, /enforce_jwt.*refusing to start/)
    # A secret of a feature not implemented yet: the app's own checks apply
    # in the gem, so an app migrating from AnyCable with it set still boots.
    expect(described_class.new(pusher_secret: "x").resolved["warnings"].join).to include("pusher_secret")
    # The fast lane's keys are real options now.
    expect(described_class.new(jwt_secret: "x").resolved).to include("effective_jwt_secret" => "x", "warnings" => [])
    expect(described_class.new(presets: "fly").resolved["warnings"].join).to include("presets")
  end

  describe "Ferrocable.broadcast to a ferrocable binary with only secret set" do
    before(:all) do
      @rpc = Ferrocable::Server.new({ rpc_host: "127.0.0.1:0" }, mode: :rpc, worker_pool_size: 2).start
      # With a secret, the HTTP endpoint is on the WebSocket port and
      # requires the key derived from it.
      @binary, @ws_port = FerrocableBinary.start("--rpc_host=127.0.0.1:#{@rpc.port}", "--broadcast_adapter=http",
                                                 "--secret=s3cret")
      @saved = Ferrocable.config.options.dup
    end

    after(:all) do
      @binary.terminate
      @rpc.stop
      Ferrocable.config.options.replace(@saved)
    end

    it "reaches a client through the HTTP endpoint (the broadcaster sends the derived key)" do
      Ferrocable.config.options.replace(secret: "s3cret",
                                        http_broadcast_url: "http://127.0.0.1:#{@ws_port}/_broadcast")
      client = guest(@ws_port, "keyed")
      Ferrocable.broadcast("chat_proc", { text: "with the derived key" }.to_json)
      expect(client.receive["message"]).to eq("text" => "with the derived key")
      client.close
    end

    it "finds the endpoint from host and port, as the core resolves it" do
      Ferrocable.config.options.replace(secret: "s3cret", host: "127.0.0.1", port: @ws_port)
      client = guest(@ws_port, "located")
      Ferrocable.broadcast("chat_proc", { text: "to the resolved URL" }.to_json)
      expect(client.receive["message"]).to eq("text" => "to the resolved URL")
      client.close
    end
  end
end
