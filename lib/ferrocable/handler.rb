# frozen_string_literal: true

require "json"

module Ferrocable
  # Runs the application's Action Cable code for each call: the
  # connection class (`connect`, `identified_by`, `reject_unauthorized_connection`),
  # channels (`subscribed`, `reject`, streams, actions, `unsubscribed`) and
  # `disconnect`, unmodified.
  #
  # Stateful (embedded mode): a connection object and its channel objects
  # live as long as the socket, as in Action Cable, so instance variables set
  # in `subscribed` are there in later actions. Stateless (the gRPC server):
  # objects are rebuilt from identifiers for every call, as AnyCable does.
  #
  # Every exception is caught here: it is logged with its backtrace and
  # becomes an error reply; the worker thread and the server carry on.
  class Handler
    DISCONNECT_UNAUTHORIZED = { type: "disconnect", reason: "unauthorized", reconnect: false }.to_json.freeze
    WELCOME = { type: "welcome" }.to_json.freeze

    def initialize(stateless:, cable_server: CableServer.new(timers: !stateless), logger: Ferrocable.logger)
      @stateless = stateless
      @cable_server = cable_server
      @logger = logger
      @sessions = {}
      @lock = Mutex.new
    end

    # Live connection objects (embedded mode).
    def session_count
      @lock.synchronize { @sessions.size }
    end

    # Runs one call (a Hash from the extension); returns the reply Hash.
    def call(call)
      reply = Reply.new
      Reply.collect(reply) do
        case call["kind"]
        when "connect" then connect(call, reply)
        when "command" then command(call, reply)
        when "disconnect" then disconnect(call, reply)
        else raise ArgumentError, "unknown call kind #{call['kind'].inspect}"
        end
      end
      reply.to_h
    rescue SystemExit, SignalException
      raise
    rescue Exception => e # rubocop:disable Lint/RescueException
      log_exception(e, call)
      reply.status = "error"
      reply.error_msg = "#{e.class}: #{e.message}"
      reply.to_h
    end

    private

    attr_reader :logger

    def connection_class
      @cable_server.config.connection_class.call
    end

    def new_connection(env_hash, sid = nil)
      socket = Socket.new
      socket.sid = sid unless @stateless
      connection = connection_class.new(@cable_server, RequestEnv.build(env_hash))
      connection.instance_variable_set(:@websocket, socket)
      connection
    end

    # Action Cable's worker callbacks (Rails executor, Active Record log tags).
    def work(connection, &block)
      @cable_server.worker_pool.work(connection, &block)
    end

    def connect(call, reply)
      connection = new_connection(call["env"], call["sid"])
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
      @lock.synchronize { @sessions[call["sid"]] = connection } unless @stateless
    end

    def reject_connection(reply)
      reply.status = "failure"
      reply.transmissions << DISCONNECT_UNAUTHORIZED
    end

    def command(call, reply)
      reply.defer_broadcasts = !@stateless
      connection = connection_for(call)
      identifier = call["identifier"]
      case call["command"]
      when "subscribe" then subscribe(connection, identifier, reply)
      when "unsubscribe" then unsubscribe(connection, identifier, reply, call.dig("env", "istate"))
      when "message" then perform(connection, identifier, call["data"], reply, call.dig("env", "istate"))
      else raise ArgumentError, "unknown command #{call['command'].inspect}"
      end
    end

    def connection_for(call)
      if @stateless
        connection = new_connection(call["env"])
        Identifiers.restore(connection, call["connection_identifiers"] || call["identifiers"])
        connection
      else
        @lock.synchronize { @sessions[call["sid"]] } ||
          raise(Error, "no live connection for session #{call['sid'].inspect}")
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

    def subscribe(connection, identifier, reply)
      klass, params = channel_class(identifier)
      unless klass
        reply.status = "failure"
        reply.transmissions << { identifier: identifier, type: "reject_subscription" }.to_json
        return
      end
      channel = klass.new(connection, identifier, params)
      subscriptions_of(connection)[identifier] = channel
      begin
        work(connection) { channel.subscribe_to_channel }
      rescue StandardError, ScriptError
        subscriptions_of(connection).delete(identifier)
        raise
      end
      if channel.send(:subscription_rejected?)
        reply.status = "failure"
      elsif @stateless
        reply.istate[ChannelState::KEY] = ChannelState.dump(channel)
      end
    end

    def find_channel(connection, identifier, istate = nil)
      if @stateless
        klass, params = channel_class(identifier)
        raise Error, "subscription class not found: #{compact(identifier)}" unless klass

        channel = klass.new(connection, identifier, params)
        ChannelState.load(channel, istate)
        channel
      else
        subscriptions_of(connection)[identifier] ||
          raise(Error, "unable to find subscription with identifier: #{identifier}")
      end
    end

    def unsubscribe(connection, identifier, reply, istate)
      channel = find_channel(connection, identifier, istate)
      reply.stop_streams = true
      work(connection) do
        if @stateless
          channel.unsubscribe_from_channel
        else
          # The client has dropped the subscription: it goes even when
          # `unsubscribed` raises (the error is still reported).
          begin
            connection.subscriptions.remove_subscription(channel)
          ensure
            subscriptions_of(connection).delete(identifier)
          end
        end
      end
    end

    def perform(connection, identifier, data, reply, istate)
      channel = find_channel(connection, identifier, istate)
      before = @stateless && istate && istate[ChannelState::KEY]
      begin
        work(connection) { channel.perform_action(ActiveSupport::JSON.decode(data)) }
      ensure
        if @stateless
          after = ChannelState.dump(channel)
          reply.istate[ChannelState::KEY] = after unless after == before
        end
      end
    end

    def disconnect(call, reply)
      connection =
        if @stateless
          connection = connection_for(call)
          states = call.dig("env", "istate") || {}
          Array(call["subscriptions"]).each do |identifier|
            klass, params = channel_class(identifier)
            next unless klass

            channel = klass.new(connection, identifier, params)
            ChannelState.load(channel, JSON.parse(states[identifier])) if states[identifier]
            subscriptions_of(connection)[identifier] = channel
          end
          connection
        else
          @lock.synchronize { @sessions.delete(call["sid"]) }
        end
      return reply unless connection

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

    def log_exception(error, call)
      identifier = call && call["identifier"] && compact(call["identifier"])
      where = [call && call["kind"], call && call["command"], identifier].compact.join(" ")
      logger.error("Ferrocable: #{error.class}: #{error.message} (in #{where})\n#{Array(error.backtrace).join("\n")}")
    end

    # A client-supplied value as the log may show it (as the core does):
    # escaped, so it cannot forge a line or reach the terminal, and cut
    # after 100 bytes, so it cannot fill the disk.
    def compact(value)
      value = value.to_s
      return value.inspect if value.bytesize <= 100

      "#{value.byteslice(0, 100).scrub.inspect}...(+#{value.bytesize - 100} bytes)"
    end
  end
end
