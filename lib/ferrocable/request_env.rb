# frozen_string_literal: true

require "uri"
require "stringio"

module Ferrocable
  # Builds the Rack env a connection object sees (request, cookies, params)
  # from what Rust passes: the request URL and the allow-listed headers.
  module RequestEnv
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
        "HTTP_HOST" => [uri.host, uri.port].compact.join(":"),
        "HTTPS" => uri.scheme == "https" ? "on" : "off",
        "rack.url_scheme" => uri.scheme == "https" ? "https" : "http",
        "rack.input" => StringIO.new(+""),
        "rack.errors" => $stderr,
        "HTTP_CONNECTION" => "Upgrade",
        "HTTP_UPGRADE" => "websocket",
        "REMOTE_ADDR" => headers["REMOTE_ADDR"].to_s
      }
      headers.each do |name, value|
        next if name == "REMOTE_ADDR"

        rack["HTTP_#{name.upcase.tr('-', '_')}"] = value
      end
      rack
    end
  end
end
