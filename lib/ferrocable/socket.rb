# frozen_string_literal: true

module Ferrocable
  # Stands in for Action Cable's WebSocket inside a connection object:
  # what the connection transmits goes into the reply of the call being
  # served, and `close` becomes the reply's disconnect flag. Outside a call
  # (periodic timers, a remote disconnect arriving through the app's
  # subscription adapter) both go to the session by id. The real socket
  # lives in Rust.
  class Socket
    attr_reader :protocol
    # The session this socket stands for (embedded mode).
    attr_accessor :sid

    def initialize(protocol: "actioncable-v1-json")
      @protocol = protocol
      @closed = false
      @welcomed = false
      @sid = nil
    end

    # Whether Action Cable welcomed the connection on this socket (its
    # `handle_open` got that far: not rejected, nothing raised).
    def welcomed?
      @welcomed
    end

    def possible?
      true
    end

    def alive?
      !@closed
    end

    def transmit(data)
      reply = current_reply
      if reply
        reply.transmissions << data.to_s
      elsif @sid && Ferrocable.servers.any? { |server| server.native.transmit(@sid, data.to_s) }
        nil
      else
        Ferrocable.logger.debug("Ferrocable: transmission for a session that is gone dropped: #{data.to_s[0, 200]}")
      end
    end

    def close
      @closed = true
      reply = current_reply
      if reply
        reply.disconnect = true
      elsif @sid
        Ferrocable.servers.each { |server| server.native.close(@sid) }
      end
    end

    # The reply of the call serving this socket's session, if this thread
    # serves one (a callback may reach another session's socket).
    def current_reply
      reply = Reply.current
      reply if reply && (@sid.nil? || reply.sid.nil? || reply.sid == @sid)
    end

    # What Action Cable's server answers a handshake it upgrades (the socket
    # is Rust's: nothing to hijack here).
    def rack_response
      [-1, {}, []]
    end

    # Action Cable's welcome on a Ferrocable socket carries the session id,
    # as AnyCable's servers send it (clients such as @anycable/web read
    # it), and marks the socket welcomed. Prepended to
    # `ActionCable::Connection::Base` (its `send_welcome_message`, private
    # in Action Cable 6.1 through 8.x).
    module Welcome
      private

      def send_welcome_message
        socket = websocket
        return super unless socket.is_a?(Ferrocable::Socket) && socket.sid

        transmit type: ActionCable::INTERNAL[:message_types][:welcome], sid: socket.sid
        socket.welcomed!
      end
    end

    def welcomed!
      @welcomed = true
    end

    # Action Cable's connection constructor wraps the request in a
    # WebSocket driver (`Connection::WebSocket.new(env, self, event_loop)`
    # in `Connection::Base#initialize`: 6.1 through 8.1 checked), which a
    # connection served by Ferrocable replaces with this socket at once.
    # For Ferrocable's event loop the wrapper is built without its driver:
    # the driver and its listeners were a quarter of a connect's Ruby time.
    module WithoutDriver
      def initialize(env, event_target, event_loop, **options)
        return super unless event_loop.is_a?(Ferrocable::CableServer::EventLoop)

        @websocket = nil
      end
    end
  end
end

ActionCable::Connection::Base.prepend(Ferrocable::Socket::Welcome)
# Rails main (8.2) moved the wrapper to `ActionCable::Server::Socket`, with
# the connection's constructor (handshake.rb's build_connection).
if defined?(ActionCable::Connection::WebSocket)
  ActionCable::Connection::WebSocket.prepend(Ferrocable::Socket::WithoutDriver)
end
