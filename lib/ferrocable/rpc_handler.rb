# frozen_string_literal: true

require "json"

module Ferrocable
  # The `anycable.RPC` server's calls (`rake ferrocable:rpc`, behind the
  # ferrocable binary or anycable-go): stateless, as AnyCable's contract
  # is. Connection and channel objects are rebuilt from identifiers for
  # every call; instance variables travel in the subscription's `istate`
  # (ChannelState), so a channel that sets `@room` in `subscribed` finds it
  # in later actions, as it does in embedded mode.
  class RpcHandler < Handler
    DISCONNECT_UNAUTHORIZED = { type: "disconnect", reason: "unauthorized", reconnect: false }.to_json.freeze
    WELCOME = { type: "welcome" }.to_json.freeze

    def initialize(cable_server: CableServer.new(timers: false), logger: Ferrocable.logger)
      super(logger: logger)
      @cable_server = cable_server
    end

    private

    def connection_class
      @cable_server.config.connection_class.call
    end

    def new_connection(env_hash)
      connection = connection_class.new(@cable_server, RequestEnv.build(env_hash))
      connection.instance_variable_set(:@websocket, Socket.new)
      connection
    end

    # Action Cable's worker callbacks (Rails executor, Active Record log tags).
    def work(connection, &block)
      @cable_server.worker_pool.work(connection, &block)
    end

    def connect(call, reply)
      connection = new_connection(call["env"])
      begin
        work(connection) { connection.connect if connection.respond_to?(:connect) }
      rescue ActionCable::Connection::Authorization::UnauthorizedError
        logger.info("Ferrocable: connection rejected (unauthorized)")
        return reject_connection(reply)
      rescue StandardError, ScriptError => e
        log_exception(e, call)
        return reject_connection(reply)
      end
      reply.identifiers = Identifiers.of(connection)
      reply.transmissions << WELCOME
    end

    def reject_connection(reply)
      reply.status = "failure"
      reply.transmissions << DISCONNECT_UNAUTHORIZED
    end

    def command(call, reply)
      connection = new_connection(call["env"])
      Identifiers.restore(connection, call["connection_identifiers"])
      identifier = call["identifier"]
      istate = call.dig("env", "istate")
      case call["command"]
      when "subscribe" then subscribe(connection, identifier, reply)
      when "unsubscribe" then unsubscribe(connection, identifier, reply, istate)
      when "message" then perform(connection, identifier, call["data"], reply, istate)
      else raise ArgumentError, "unknown command #{call['command'].inspect}"
      end
    end

    def channel_class(identifier)
      params = ActiveSupport::JSON.decode(identifier)
      params = params.with_indifferent_access if params.is_a?(Hash)
      klass = params.is_a?(Hash) ? params[:channel].to_s.safe_constantize : nil
      return [klass, params] if klass.is_a?(Class) && klass <= ActionCable::Channel::Base

      logger.error("Ferrocable: subscription class not found: #{compact(identifier)}")
      [nil, params]
    rescue JSON::ParserError
      logger.error("Ferrocable: identifier is not JSON: #{compact(identifier)}")
      [nil, nil]
    end

    # The connection's own subscriptions Hash (identifier => channel).
    def subscriptions_of(connection)
      connection.subscriptions.send(:subscriptions)
    end

    def build_channel(connection, identifier, istate = nil)
      klass, params = channel_class(identifier)
      raise Error, "subscription class not found: #{compact(identifier)}" unless klass

      channel = klass.new(connection, identifier, params)
      ChannelState.load(channel, istate)
      channel
    end

    def subscribe(connection, identifier, reply)
      klass, params = channel_class(identifier)
      unless klass
        reply.status = "failure"
        reply.transmissions << { identifier: identifier, type: "reject_subscription" }.to_json
        return
      end
      channel = klass.new(connection, identifier, params)
      subscriptions_of(connection)[identifier] = channel
      work(connection) { channel.subscribe_to_channel }
      if channel.send(:subscription_rejected?)
        reply.status = "failure"
      else
        reply.istate[ChannelState::KEY] = ChannelState.dump(channel)
      end
      warn_callbacks(reply)
    end

    def unsubscribe(connection, identifier, reply, istate)
      channel = build_channel(connection, identifier, istate)
      reply.stop_streams = true
      work(connection) { channel.unsubscribe_from_channel }
    end

    def perform(connection, identifier, data, reply, istate)
      channel = build_channel(connection, identifier, istate)
      before = istate && istate[ChannelState::KEY]
      begin
        work(connection) { channel.perform_action(ActiveSupport::JSON.decode(data)) }
      ensure
        after = ChannelState.dump(channel)
        reply.istate[ChannelState::KEY] = after unless after == before
        warn_callbacks(reply)
      end
    end

    def disconnect(call, reply)
      connection = new_connection(call["env"])
      Identifiers.restore(connection, call["identifiers"])
      states = call.dig("env", "istate") || {}
      Array(call["subscriptions"]).each do |identifier|
        klass, params = channel_class(identifier)
        next unless klass

        channel = klass.new(connection, identifier, params)
        ChannelState.load(channel, JSON.parse(states[identifier])) if states[identifier]
        subscriptions_of(connection)[identifier] = channel
      end

      # Every subscription's `unsubscribed` runs, then `disconnect`, even if
      # one of them raises; the first error is reported.
      failure = nil
      work(connection) do
        subscriptions_of(connection).values.each do |channel|
          connection.subscriptions.remove_subscription(channel)
        rescue StandardError, ScriptError => e
          failure ||= e
          log_exception(e, call)
          subscriptions_of(connection).delete(channel.identifier)
        end
        connection.disconnect if connection.respond_to?(:disconnect)
      end
      raise failure if failure

      reply
    end

    # The RPC contract has no stream callbacks (see warn_callbacks).
    def stream(call, _reply)
      raise Error, "stream callbacks are not served behind the RPC server (#{compact(call['stream'])})"
    end

    # Stream callbacks need the live channel object; the RPC contract has
    # none (AnyCable's neither): such streams deliver the broadcast as is.
    def warn_callbacks(reply)
      return if reply.stream_handlers.none? { |_, _, _, callback| callback }

      @warned_callbacks ||= begin
        logger.warn("Ferrocable: stream_from with a callback or coder behind the RPC server delivers broadcasts " \
                    "as they are (the callback needs a live channel object: use embedded mode)")
        true
      end
    end
  end
end
