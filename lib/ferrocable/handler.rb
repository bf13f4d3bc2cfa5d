# frozen_string_literal: true

module Ferrocable
  # Runs the application's Action Cable code for each call from Rust and
  # returns the reply. The two modes are two subclasses over this dispatch:
  # EmbeddedHandler (the WebSocket server in this process: live connection
  # objects, Action Cable's own entry points) and RpcHandler (the
  # `anycable.RPC` server: stateless calls, AnyCable's contract).
  #
  # Every exception that escapes is caught here: it is logged with its
  # backtrace and becomes an error reply; the worker thread and the server
  # carry on.
  class Handler
    def initialize(logger: Ferrocable.logger)
      @logger = logger
    end

    # Runs one call (a Hash from the extension); returns the reply Hash.
    # Subclasses define `connect`, `command`, `stream` and `disconnect`.
    def call(call)
      reply = Reply.new
      reply.sid = call["sid"]
      Reply.collect(reply) do
        case call["kind"]
        when "connect" then connect(call, reply)
        when "command" then command(call, reply)
        when "stream" then stream(call, reply)
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

    # The reply for a call that could not run at all (its worker died).
    def self.error_reply(message)
      reply = Reply.new
      reply.status = "error"
      reply.error_msg = message
      reply.to_h
    end

    private

    attr_reader :logger

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
