# frozen_string_literal: true

module Ferrocable
  # What one application call produces: transmissions, stream changes,
  # state changes and the disconnect flag. The reply being built is
  # thread-local, because Action Cable's code reaches the socket and pubsub
  # through objects that do not know which call they serve.
  class Reply
    attr_reader :transmissions, :streams, :stopped_streams, :cstate, :istate, :broadcasts
    attr_accessor :status, :error_msg, :identifiers, :disconnect, :stop_streams
    # Set for embedded command calls: broadcasts made meanwhile travel in the
    # reply and are published after it is applied (so a channel broadcasting
    # in `subscribed` reaches its own new stream).
    attr_accessor :defer_broadcasts

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
      @cstate = {}
      @istate = {}
      @disconnect = false
      @stop_streams = false
      @broadcasts = []
      @defer_broadcasts = false
    end

    def stream(name)
      @stopped_streams.delete(name)
      @streams << name unless @streams.include?(name)
    end

    def stop_stream(name)
      @streams.delete(name)
      @stopped_streams << name unless @stopped_streams.include?(name)
    end

    def transmitted?(type)
      @transmissions.any? { |t| t.include?(%("type":"#{type}")) }
    end

    def to_h
      {
        "status" => status,
        "error_msg" => error_msg.to_s,
        "identifiers" => identifiers.to_s,
        "transmissions" => transmissions,
        "streams" => streams,
        "stopped_streams" => stopped_streams,
        "stop_streams" => stop_streams,
        "disconnect" => disconnect,
        "cstate" => cstate,
        "istate" => istate,
        "broadcasts" => broadcasts
      }
    end
  end
end
