# frozen_string_literal: true

# Ferrocable: Action Cable served by a Rust server inside this process.
#
#   require "ferrocable"
#   Ferrocable::Server.new(port: 8080).start   # or `rake ferrocable:server`
#
# In a Rails app the Railtie wires `config.ferrocable`, the `ferrocable`
# subscription adapter, the rake tasks and the Puma plugin.

require "logger"
require "action_cable"
require "ferrocable/version"
require "ferrocable/errors"
require "ferrocable/ferrocable_ext"
require "ferrocable/config"
require "ferrocable/reply"
require "ferrocable/socket"
require "ferrocable/identifiers"
require "ferrocable/fast_lane"
require "ferrocable/channel_state"
require "ferrocable/request_env"
require "ferrocable/cable_server"
require "ferrocable/channel_streams"
require "ferrocable/channel_identifiers"
require "ferrocable/presence"
require "ferrocable/stream_relay"
require "ferrocable/handshake"
require "ferrocable/handler"
require "ferrocable/embedded_handler"
require "ferrocable/rpc_handler"
require "ferrocable/worker_pool"
require "ferrocable/server"
require "ferrocable/http_rpc"
require "ferrocable/broadcaster"
require "ferrocable/remote_connections"
require "action_cable/subscription_adapter/ferrocable"

module Ferrocable
  class << self
    attr_writer :logger, :config

    def logger
      @logger ||= (defined?(Rails) && Rails.respond_to?(:logger) && Rails.logger) || Logger.new($stdout)
    end

    def config
      @config ||= Config.new
    end

    # WebSocket servers running in this process (usually one).
    def servers
      @servers_lock.synchronize { @servers.select(&:running?) }
    end

    def register_server(server)
      @servers_lock.synchronize { @servers << server unless @servers.include?(server) }
    end

    def unregister_server(server)
      @servers_lock.synchronize { @servers.delete(server) }
    end

    def broadcaster
      @broadcaster ||= Broadcaster.new(config)
    end

    # Publishes `data` (a String, usually JSON) to `stream`.
    def broadcast(stream, data)
      broadcaster.broadcast(stream, data)
    end

    # A JWT for the fast lane's identification (see FastLane.jwt_token).
    def jwt_token(expires_in: 3600, **identifiers)
      FastLane.jwt_token(config, expires_in: expires_in, **identifiers)
    end

    # A signed stream name for the `$pubsub` channel (see FastLane).
    def signed_stream_name(streamables)
      FastLane.signed_stream_name(config, streamables)
    end

    # Resets memoized state (after config changes, or in a forked child).
    def reset!
      @broadcaster = nil
      @servers_lock.synchronize { @servers.clear }
    end
  end

  @servers = []
  @servers_lock = Mutex.new
end

require "ferrocable/railtie" if defined?(Rails::Railtie)
