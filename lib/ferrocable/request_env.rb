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
    # A path segment's characters (RFC 3986's pchar, as URI takes them).
    PCHAR = "(?:[A-Za-z0-9\\-._~!$&'()*+,;=:@]|%[0-9A-Fa-f]{2})"
    # A query's or fragment's: URI escapes "'" there, so such a URL goes to URI.
    QCHAR = "(?:[A-Za-z0-9\\-._~!$&()*+,;=:@/?]|%[0-9A-Fa-f]{2})"
    # An absolute http(s) URL with a registered name or IPv4 host, in the
    # characters RFC 3986 (and URI) allows; anything else goes to URI.
    ABSOLUTE_URL = %r{\A(https?)://(?:(?:[A-Za-z0-9\-._~!$&'()*+,;=:]|%[0-9A-Fa-f]{2})*@)?
                      ((?:[A-Za-z0-9\-._~!$&'()*+,;=]|%[0-9A-Fa-f]{2})+)(?::(\d*))?
                      ((?:/#{PCHAR}*)*)(?:\?(#{QCHAR}*))?(?:\##{QCHAR}*)?\z}x.freeze
    # The schemes the servers pass (Ferrocable's and anycable-go's); others
    # go to URI, whose default ports for ws/wss vary across Ruby versions.
    DEFAULT_PORTS = { "http" => 80, "https" => 443 }.freeze

    # Rack's names of the header names seen, frozen (so the env takes them
    # as they are): at most NAMES_KEPT, as a client chooses the names.
    NAMES_KEPT = 512
    @names = {}

    module_function

    def rack_name(name)
      @names[name] || begin
        rack = UNPREFIXED[name] || -"HTTP_#{name.upcase.tr('-', '_')}"
        @names[-name] = rack if @names.size < NAMES_KEPT
        rack
      end
    end

    def build(env)
      scheme, host, port, path, query = url_parts(env["url"].to_s)
      headers = env["headers"] || {}
      rack = {
        "REQUEST_METHOD" => "GET",
        "SCRIPT_NAME" => "",
        "PATH_INFO" => path.to_s.empty? ? "/" : path,
        "QUERY_STRING" => query.to_s,
        "SERVER_NAME" => host.to_s,
        "SERVER_PORT" => (port || 80).to_s,
        "SERVER_PROTOCOL" => "HTTP/1.1",
        "HTTP_VERSION" => "HTTP/1.1",
        "HTTP_HOST" => [host, port].compact.join(":"),
        "HTTPS" => scheme == "https" ? "on" : "off",
        "rack.url_scheme" => scheme == "https" ? "https" : "http",
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

        rack[rack_name(name)] = value
      end
      rack
    end

    # [scheme, host, port, path, query] of `url`, as URI.parse gives them
    # (the port defaulted by scheme), without URI's cost (half of building
    # the env) for the absolute URLs servers pass.
    def url_parts(url)
      match = ABSOLUTE_URL.match(url)
      unless match
        uri = URI.parse(url)
        return [uri.scheme, uri.host, uri.port, uri.path, uri.query]
      end

      scheme, host, port, path, query = match.captures
      port = port.nil? || port.empty? ? DEFAULT_PORTS[scheme] : Integer(port, 10)
      # URI gives the query in US-ASCII, the other parts in the URL's encoding.
      [scheme, host, port, path || "", query&.force_encoding(Encoding::US_ASCII)]
    end
  end
end
