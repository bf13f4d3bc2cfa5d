# frozen_string_literal: true

require "active_support/security_utils"

module Ferrocable
  # HTTP RPC: AnyCable's RPC over HTTP/1.1, for the ferrocable binary (or
  # anycable-go) started with `rpc_host=http://app/_anycable`. A Rack app
  # answering POST /connect, /command and /disconnect with the JSON messages
  # of the `anycable.RPC` contract, run by the RPC handler (stateless, as
  # behind `rake ferrocable:rpc`), so split mode needs no gRPC server nor
  # HTTP/2. Mounted by the Railtie with `http_rpc: true` (at `/_anycable`)
  # or `http_rpc_mount_path:`, as AnyCable's Rails integration does, or by
  # hand:
  #
  #   mount Ferrocable::HTTPRPC.new => "/_anycable"
  #
  # Every call must carry `Authorization: Bearer <token>`: `http_rpc_secret`,
  # else the token derived from `secret` (what the binary sends). A call on
  # this endpoint acts as any user it names, so without a token it refuses to
  # be built; `http_rpc_secret: none` opens it on purpose (with a warning).
  class HTTPRPC
    METHODS = %w[connect command disconnect].freeze
    DEFAULT_MOUNT_PATH = "/_anycable"

    # `secret`: the token calls must carry (default: the configuration's);
    # `handler`: what runs the calls (default: the RPC handler).
    def initialize(secret: nil, handler: nil, config: Ferrocable.config)
      @token = secret || config.http_rpc_secret
      @token = nil if @token == "none"
      if @token.nil?
        unless secret == "none" || config[:http_rpc_secret].to_s == "none"
          raise ConfigError, "HTTP RPC needs a token: set http_rpc_secret (ANYCABLE_HTTP_RPC_SECRET) or secret " \
                             "(ANYCABLE_SECRET), the same as the ferrocable binary's. A call on this endpoint " \
                             "acts as any user it names; http_rpc_secret: none serves it without a token."
        end
        Ferrocable.logger.warn("Ferrocable: HTTP RPC without a token (http_rpc_secret: none): anyone who can " \
                               "reach it can act as any user")
      end
      @handler = handler || Server.rpc_handler
    end

    # A Rack app that builds the endpoint on its first request (and answers
    # 500 naming the problem while it cannot be built: no token configured).
    def self.lazy(**options)
      lock = Mutex.new
      endpoint = nil
      lambda do |env|
        lock.synchronize { endpoint ||= new(**options) }.call(env)
      rescue ConfigError => e
        Ferrocable.logger.error("Ferrocable: #{e.message}")
        [500, { "content-type" => "text/plain" }, ["HTTP RPC is not configured: #{e.message}"]]
      end
    end

    def call(env)
      return text(404, "Not found") unless env["REQUEST_METHOD"] == "POST"
      return text(401, "Unauthorized") unless authorized?(env["HTTP_AUTHORIZATION"].to_s)

      method = env["PATH_INFO"].to_s.delete_prefix("/")
      return text(404, "Not found") unless METHODS.include?(method)

      body = env["rack.input"]&.read.to_s
      return text(422, "Empty request body") if body.empty?

      call = Native.http_rpc_call(method, body, env["HTTP_X_ANYCABLE_META_SID"].to_s)
      [200, { "content-type" => "application/json" }, [Native.http_rpc_reply(method, @handler.call(call))]]
    rescue ArgumentError => e
      text(422, "Invalid request body: #{e.message}")
    end

    private

    def authorized?(header)
      return true if @token.nil?

      ActiveSupport::SecurityUtils.secure_compare(header, "Bearer #{@token}")
    end

    def text(status, message)
      [status, { "content-type" => "text/plain" }, [message]]
    end
  end
end
