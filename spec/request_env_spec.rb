# frozen_string_literal: true

require "uri"

# The Rack env of a handshake: its URL parts as URI.parse gives them (what
# this module used before it parsed absolute URLs itself).
RSpec.describe Ferrocable::RequestEnv do
  def by_uri(url)
    uri = URI.parse(url)
    {
      "PATH_INFO" => uri.path.to_s.empty? ? "/" : uri.path,
      "QUERY_STRING" => uri.query.to_s,
      "SERVER_NAME" => uri.host.to_s,
      "SERVER_PORT" => (uri.port || 80).to_s,
      "HTTP_HOST" => [uri.host, uri.port].compact.join(":"),
      "HTTPS" => uri.scheme == "https" ? "on" : "off",
      "rack.url_scheme" => uri.scheme == "https" ? "https" : "http"
    }
  end

  urls = [
    "http://127.0.0.1:8080/cable",
    "http://localhost/cable?token=abc&x=%20y",
    "https://example.com/cable",
    "https://example.com:8443/a/b/c?",
    "ws://example.com/cable",
    "wss://example.com/cable?jid=eyJ.eyJ.sig",
    "http://[::1]:3000/cable?q=1",
    "http://[2001:db8::1]/cable",
    "http://user:pass@example.com:81/cable",
    "http://example.com",
    "http://example.com?x=1",
    "http://example.com:/cable",
    "http://example.com/cable#fragment",
    "http://example.com/cable?x=1#fragment",
    "http://sub.example-host.co.uk:65535/c%2Fable;p?a=b;c=d",
    "HTTP://Example.COM/cable",
    "gopher://example.com/cable",
    "/cable?x=1"
  ]

  urls.each do |url|
    it "builds #{url} as URI.parse reads it" do
      env = described_class.build("url" => url, "headers" => {})
      expect(env.slice(*by_uri(url).keys)).to eq(by_uri(url))
      expect(env.slice(*by_uri(url).keys).transform_values(&:encoding))
        .to eq(by_uri(url).transform_values(&:encoding))
    end
  end

  it "reads any URL as URI.parse does, or refuses it as URI does" do
    random = Random.new(15)
    pieces = ["http://", "https://", "ws://", "h", "example.com", "127.0.0.1", ":", "8080", "/", "cable", "?",
              "#", "&", "=", "%20", "%zz", "%", "@", "[", "]", "::1", " ", "_", "~", "|", "^", ";", "+", "'",
              "\"", "<", "`", "!", "$", "(", "*", ",", "-", "."]
    20_000.times do
      url = Array.new(random.rand(1..9)) { pieces.sample(random: random) }.join
      url = "http://#{url}" if random.rand < 0.5
      expected = begin
        by_uri(url)
      rescue URI::InvalidURIError
        :refused
      end
      actual = begin
        described_class.build("url" => url, "headers" => {}).slice(*by_uri("http://h").keys)
      rescue URI::InvalidURIError
        :refused
      end
      expect([url, actual]).to eq([url, expected])
    end
  end

  it "refuses what URI refuses" do
    expect { described_class.build("url" => "http://exa mple.com/cable", "headers" => {}) }
      .to raise_error(URI::InvalidURIError)
  end

  it "takes headers as a Rack server does" do
    env = described_class.build("url" => "http://h/cable", "headers" => {
                                  "content-type" => "text/plain", "x-forwarded-for" => "10.0.0.1",
                                  "cookie" => "a=b", "REMOTE_ADDR" => "127.0.0.2"
                                })
    expect(env).to include("CONTENT_TYPE" => "text/plain", "HTTP_X_FORWARDED_FOR" => "10.0.0.1",
                           "HTTP_COOKIE" => "a=b", "REMOTE_ADDR" => "127.0.0.2")
    expect(env).not_to have_key("HTTP_REMOTE_ADDR")
  end

  it "keeps a bounded number of header names, whatever names clients send" do
    headers = Array.new(2 * described_class::NAMES_KEPT) { |i| ["x-random-#{i}", "v"] }.to_h
    env = described_class.build("url" => "http://h/cable", "headers" => headers)
    expect(env["HTTP_X_RANDOM_1023"]).to eq("v")
    expect(described_class.instance_variable_get(:@names).size).to be <= described_class::NAMES_KEPT
  end
end
