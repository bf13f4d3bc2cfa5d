# frozen_string_literal: true

require "uri"
require "stringio"
require "rack"

module Ferrocable
  # Builds the Rack env of a WebSocket handshake from what Rust passes: the
  # request URL and its headers (every header in embedded mode; the
  # `headers` allow-list behind the RPC server) plus `REMOTE_ADDR`, as a
  # Rack server such as Puma builds it.
  module RequestEnv
    # Headers Rack keeps without the HTTP_ prefix.
    UNPREFIXED = { "content-type" => "CONTENT_TYPE", "content-length" => "CONTENT_LENGTH" }.freeze

    module_function

    def build(env)
      uri = URI.parse(env["url"].to_s)
      headers = env["headers"] || {}
      rack = {
        "REQUEST_METHOD" => "GET",
        "SCRIPT_NAME" => "",
        "PATH_INFO" => uri.path.to_s.empty? ? "/" : uri.path,
        "QUERY_STRING" => uri.query.to_s,
        "SERVER_NAME" => uri.host.to_s,
        "SERVER_PORT" => (uri.port || 80).to_s,
        "SERVER_PROTOCOL" => "HTTP/1.1",
        "HTTP_VERSION" => "HTTP/1.1",
        "HTTP_HOST" => [uri.host, uri.port].compact.join(":"),
        "HTTPS" => uri.scheme == "https" ? "on" : "off",
        "rack.url_scheme" => uri.scheme == "https" ? "https" : "http",
        "rack.version" => Rack::VERSION,
        "rack.input" => StringIO.new(+""),
        "rack.errors" => $stderr,
        "rack.multithread" => true,
        "rack.multiprocess" => false,
        "rack.run_once" => false,
        "HTTP_CONNECTION" => "Upgrade",
        "HTTP_UPGRADE" => "websocket",
        "REMOTE_ADDR" => headers["REMOTE_ADDR"].to_s
      }
      headers.each do |name, value|
        next if name == "REMOTE_ADDR"

        rack[UNPREFIXED[name] || "HTTP_#{name.upcase.tr('-', '_')}"] = value
      end
      rack
    end
  end
end
