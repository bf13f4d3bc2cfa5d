# frozen_string_literal: true

module Ferrocable
  # Stands in for Action Cable's WebSocket inside a connection object:
  # what the connection transmits goes into the reply of the call being
  # served, and `close` becomes the reply's disconnect flag. The real socket
  # lives in Rust.
  class Socket
    attr_reader :protocol
    # The session this socket stands for (embedded mode), so transmissions
    # made outside a call (periodic timers) still reach it.
    attr_accessor :sid

    def initialize(protocol: "actioncable-v1-json")
      @protocol = protocol
      @closed = false
      @sid = nil
    end

    def possible?
      true
    end

    def alive?
      !@closed
    end

    def transmit(data)
      reply = Reply.current
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
      Reply.current&.disconnect = true
    end

    def rack_response
      [-1, {}, []]
    end
  end
end
