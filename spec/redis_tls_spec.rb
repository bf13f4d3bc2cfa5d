# frozen_string_literal: true

require "spec_helper"
require "redis_process"
require "test_pki"
require "redis"

# The gem's broadcaster with a rediss:// URL and anycable-go's redis_tls_*
# options, against a redis-server that speaks TLS and requires a client
# certificate (and plaintext on another port, where the spec listens).
RSpec.describe "Broadcasting through Redis over TLS" do
  before(:all) do
    @pki = TestPki.new
    @tls_port = Ports.reserve
    @redis = RedisProcess.new("--tls-port", @tls_port.to_s, "--tls-cert-file", @pki.path("server.pem"),
                              "--tls-key-file", @pki.path("server.key"), "--tls-ca-cert-file", @pki.path("ca.pem"),
                              "--tls-auth-clients", "yes")
  end

  after(:all) do
    @redis.stop
    @pki.remove
  end

  def options(**more)
    { broadcast_adapter: "redis", redis_url: "rediss://localhost:#{@tls_port}",
      redis_tls_client_cert_path: @pki.path("client.pem"), redis_tls_client_key_path: @pki.path("client.key") }
      .merge(more)
  end

  # What reaches a subscriber on the plaintext port when the broadcaster
  # publishes (once the subscription is in place).
  def delivered(config)
    broadcaster = Ferrocable::Broadcaster.new(Ferrocable::Config.new(config))
    received = nil
    listener = Redis.new(url: "redis://127.0.0.1:#{@redis.port}")
    listener.subscribe_with_timeout(10, "__anycable__") do |on|
      on.subscribe { broadcaster.broadcast("chat_tls", { text: "hi" }.to_json) }
      on.message do |_channel, message|
        received = JSON.parse(message)
        listener.unsubscribe
      end
    end
    received
  ensure
    listener&.close
  end

  it "publishes with the server's certificate checked against redis_tls_ca_cert_path and a client certificate" do
    message = delivered(options(redis_tls_verify: true, redis_tls_ca_cert_path: @pki.path("ca.pem")))
    expect(message).to eq("stream" => "chat_tls", "data" => { text: "hi" }.to_json)
  end

  it "publishes without checking the server's certificate when redis_tls_verify is off (anycable-go's default)" do
    expect(delivered(options)["stream"]).to eq("chat_tls")
  end

  it "fails with redis_tls_verify and a CA that did not sign the server's certificate" do
    other = TestPki.new
    expect { delivered(options(redis_tls_verify: true, redis_tls_ca_cert_path: other.path("ca.pem"))) }
      .to raise_error(OpenSSL::SSL::SSLError, /certificate verify failed/)
  ensure
    other&.remove
  end
end
