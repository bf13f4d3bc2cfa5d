# frozen_string_literal: true

module Ferrocable
  # What one application call produces: transmissions, stream changes,
  # state changes and the disconnect flag. The reply being built is
  # thread-local, because Action Cable's code reaches the socket and pubsub
  # through objects that do not know which call they serve.
  class Reply
    attr_reader :transmissions, :streams, :stopped_streams, :cstate, :istate, :broadcasts, :stream_handlers
    attr_accessor :status, :error_msg, :identifiers, :disconnect, :stop_streams, :callback_streams
    # Set for embedded command calls: broadcasts made meanwhile travel in the
    # reply and are published after it is applied (so a channel broadcasting
    # in `subscribed` reaches its own new stream).
    attr_accessor :defer_broadcasts
    # The Rack response that refused a WebSocket handshake (embedded connect):
    # [status, [[name, value], ...], body].
    attr_accessor :handshake
    # The session the call serves.
    attr_accessor :sid
    # The channel's say on presence (Ferrocable::Presence):
    # {"type" => "join" | "leave", "id" => ..., "info" => json}.
    attr_accessor :presence

    def self.current
      Thread.current[:ferrocable_reply]
    end

    # Makes `reply` current for the block.
    def self.collect(reply)
      previous = Thread.current[:ferrocable_reply]
      Thread.current[:ferrocable_reply] = reply
      yield reply
    ensure
      Thread.current[:ferrocable_reply] = previous
    end

    def initialize
      @status = "success"
      @error_msg = ""
      @identifiers = ""
      @transmissions = []
      @streams = []
      @stopped_streams = []
      @callback_streams = []
      @cstate = {}
      @istate = {}
      @disconnect = false
      @stop_streams = false
      @broadcasts = []
      @defer_broadcasts = false
      @stream_handlers = []
      @handshake = nil
      @sid = nil
      @presence = nil
    end

    # `stream_from`: `handler` is Action Cable's stream handler for it,
    # `callback` whether it runs application code (a block or a coder).
    def stream(name, handler = nil, callback: false)
      @stopped_streams.delete(name)
      @streams << name unless @streams.include?(name)
      @stream_handlers << [:add, name, handler, callback] if handler
    end

    def stop_stream(name, handler = nil)
      @streams.delete(name)
      @stopped_streams << name unless @stopped_streams.include?(name)
      @stream_handlers << [:remove, name, handler, false] if handler
    end

    def to_h
      {
        "status" => status,
        "error_msg" => error_msg.to_s.scrub,
        "identifiers" => identifiers.to_s,
        "transmissions" => transmissions,
        "streams" => streams,
        "stopped_streams" => stopped_streams,
        "callback_streams" => callback_streams,
        "stop_streams" => stop_streams,
        "disconnect" => disconnect,
        "cstate" => cstate,
        "istate" => istate,
        "broadcasts" => broadcasts,
        "handshake" => handshake,
        "presence" => presence
      }
    end
  end
end
