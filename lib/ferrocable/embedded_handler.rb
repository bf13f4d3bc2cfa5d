# frozen_string_literal: true

module Ferrocable
  # Embedded mode: every socket is served by the application's connection
  # object, through Action Cable's own entry points, as Action Cable's
  # server serves it:
  #
  # - connect: the handshake runs through the app's middleware to
  #   `Connection#process` (see Handshake), then `handle_open` (connect,
  #   the internal channel, the welcome) on Action Cable's worker;
  # - commands: `handle_channel_command` (Action Cable 7.1+, with its
  #   command callbacks) or `subscriptions.execute_command` (6.1, 7.0), so
  #   connection-level `rescue_from`, duplicate subscriptions, unknown
  #   channels and rejections behave as Action Cable's code says;
  # - stream messages on callback streams: the handlers Action Cable gave
  #   pubsub for that subscription;
  # - disconnect: `handle_close` (every `unsubscribed`, then `disconnect`).
  #
  # The connection object and its channels live as long as the socket. A
  # session restored on the extended protocol (see `session_for`) gets them
  # back without `connect` or `subscribed`: the closed session's objects when
  # it closed in this process, else rebuilt from its stored identifiers and
  # channel state (after a restart, or on another node).
  class EmbeddedHandler < Handler
    # One live socket: its connection object and the stream handlers its
    # channels registered, by [identifier, stream].
    Session = Struct.new(:connection, :socket, :handlers)

    def initialize(cable_server: CableServer.new, handshake: Handshake.new(cable_server), logger: Ferrocable.logger)
      super(logger: logger)
      @cable_server = cable_server
      @handshake = handshake
      @sessions = {}
      @lock = Mutex.new
    end

    # Live connection objects.
    def session_count
      @lock.synchronize { @sessions.size }
    end

    private

    def invoke(connection, receiver, method, *args)
      @cable_server.worker_pool.invoke(receiver, method, *args, connection: connection)
    end

    # The connect call's state key with the identifiers of a JWT the core
    # verified (`fastlane::JWT_IDENTIFIERS_STATE`).
    JWT_IDENTIFIERS = "$jwt"

    # A connection identified by a JWT (verified by the core) gets the
    # token's identifiers (records located by GlobalID, as for stateless
    # calls) where its `connect` would have set them; Action Cable's
    # `handle_open` runs as usual otherwise (internal channel, welcome).
    def identify_from_jwt(connection, identifiers)
      return if identifiers.nil? || identifiers.empty?

      connection.define_singleton_method(:connect) { Identifiers.restore(self, identifiers) }
    end

    def connect(call, reply)
      socket = Socket.new
      socket.sid = call["sid"]
      connection, refused = @handshake.call(RequestEnv.build(call["env"]), socket)
      if refused
        reply.status = "failure"
        reply.handshake = refused
        reply.transmissions.clear
        return
      end

      identify_from_jwt(connection, call.dig("env", "cstate", JWT_IDENTIFIERS))
      # The outcome is Action Cable's state, not its transmissions: a
      # rejected connection has closed its socket (having sent its
      # disconnect); a welcomed one has sent its welcome (with the sid).
      invoke(connection, connection, :handle_open)
      if !socket.alive?
        reply.status = "failure"
      elsif !socket.welcomed?
        reply.status = "error"
        reply.error_msg = "connect did not complete (see the exception logged above)"
      else
        reply.identifiers = Identifiers.of(connection)
        @lock.synchronize { @sessions[call["sid"]] = Session.new(connection, socket, {}) }
        return
      end
      # The socket closes now; Action Cable runs `handle_close` (the app's
      # `disconnect` included) for a connection it did not welcome too.
      invoke(connection, connection, :handle_close)
    end

    # Keys of a call's `env.cstate` (see the core's session.rs).
    RESTORED_FROM = "$restored_from"
    RESTORABLE = "$restorable"

    def command(call, reply)
      reply.defer_broadcasts = true
      session = session_for(call)
      connection = session.connection
      identifier = call["identifier"]
      payload = { "command" => call["command"], "identifier" => identifier }
      payload["data"] = call["data"] if call["command"] == "message"
      if connection.respond_to?(:handle_channel_command)
        invoke(connection, connection, :handle_channel_command, payload)
      else
        invoke(connection, connection.subscriptions, :execute_command, payload)
      end
      if call["command"] == "subscribe"
        reply.status = connection.subscriptions.identifiers.include?(identifier) ? "success" : "failure"
      end
      record_streams(session, identifier, reply)
      report_channel_state(call, connection, identifier, reply)
    end

    # A session that may be restored keeps its channel's instance variables
    # with its stored state (as the RPC server carries them), so a channel
    # rebuilt after a restart has them back.
    def report_channel_state(call, connection, identifier, reply)
      return unless call.dig("env", "cstate", RESTORABLE)

      channel = connection.subscriptions.send(:subscriptions)[identifier]
      reply.istate[ChannelState::KEY] = ChannelState.dump(channel) if channel
    end

    # A message on a callback stream: the handlers Action Cable registered
    # for it run, each through Action Cable's worker (its own rescue/log).
    def stream(call, reply)
      reply.defer_broadcasts = true
      session = session_for(call)
      key = [call["identifier"], call["stream"]]
      handlers = @lock.synchronize { session.handlers[key]&.map(&:first) }
      handlers&.each { |handler| handler.call(call["data"]) }
      record_streams(session, call["identifier"], reply)
    end

    def disconnect(call, reply)
      session = @lock.synchronize { @sessions.delete(call["sid"]) } || restore_session(call, keep: false)
      return reply unless session

      connection = session.connection
      invoke(connection, connection, :handle_close)
      session.socket.close
      reply
    end

    def session_for(call)
      @lock.synchronize { @sessions[call["sid"]] } || restore_session(call) ||
        raise(Error, "no live connection for session #{call['sid'].inspect}")
    end

    # The connection object of a session the core restored: the previous
    # session's, if it closed in this process (kept since, its `disconnect`
    # not run), else a new one with the stored identifiers (`identified_by`
    # accessors; records through GlobalID) and channels with their stored
    # instance variables. Neither `connect` nor `subscribed` runs.
    def restore_session(call, keep: true)
      previous = call.dig("env", "cstate", RESTORED_FROM)
      return unless previous

      session = @lock.synchronize { @sessions.delete(previous) } || rebuild_session(call)
      session.socket.sid = call["sid"]
      @lock.synchronize { @sessions[call["sid"]] = session } if keep
      session
    end

    def rebuild_session(call)
      socket = Socket.new(protocol: "actioncable-v1-ext-json")
      socket.sid = call["sid"]
      socket.welcomed!
      connection = @handshake.build_connection(RequestEnv.build(call["env"]), socket)
      Identifiers.restore(connection, call["connection_identifiers"] || call["identifiers"])
      connection.instance_variable_set(:@protocol, socket.protocol)
      subscriptions = connection.subscriptions.send(:subscriptions)
      (call.dig("env", "istate") || {}).each do |identifier, state|
        channel = build_channel(connection, identifier, JSON.parse(state))
        subscriptions[identifier] = channel if channel
      end
      invoke(connection, connection, :subscribe_to_internal_channel)
      logger.info("Ferrocable: restored connection #{Identifiers.of(connection)} " \
                  "with #{subscriptions.size} subscription(s)")
      Session.new(connection, socket, {})
    end

    def build_channel(connection, identifier, istate)
      params = ActiveSupport::JSON.decode(identifier)
      params = params.with_indifferent_access if params.is_a?(Hash)
      klass = params.is_a?(Hash) ? params[:channel].to_s.safe_constantize : nil
      unless klass.is_a?(Class) && klass <= ActionCable::Channel::Base
        logger.error("Ferrocable: restored subscription class not found: #{compact(identifier)}")
        return
      end

      channel = klass.new(connection, identifier, params)
      ChannelState.load(channel, istate)
      channel
    end

    # Applies the stream handlers a call added and removed to the session,
    # and tells Rust, for every stream the call touched, whether it still
    # has handlers here and whether any of them is a callback.
    def record_streams(session, identifier, reply)
      return if reply.stream_handlers.empty?

      touched = []
      @lock.synchronize do
        reply.stream_handlers.each do |op, name, handler, callback|
          key = [identifier, name]
          list = (session.handlers[key] ||= [])
          if op == :add
            list << [handler, callback]
          else
            list.delete_if { |h, _| h.equal?(handler) }
          end
          touched << name
        end
        touched.uniq.each do |name|
          list = session.handlers[[identifier, name]]
          if list.nil? || list.empty?
            session.handlers.delete([identifier, name])
            reply.stop_stream(name)
          else
            reply.stream(name)
            reply.callback_streams << name if list.any? { |_, callback| callback }
          end
        end
      end
    end
  end
end
