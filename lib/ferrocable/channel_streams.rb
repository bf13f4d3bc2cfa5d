# frozen_string_literal: true

module Ferrocable
  # Tells which streams need the application for each message. Action
  # Cable's `stream_from(name, callback = nil, coder: nil, &block)` hands
  # pubsub a handler that always runs Ruby; a stream without a callback and
  # with the default coder only re-transmits the broadcast as it is, which
  # the Rust hub does without calling Ruby. A callback, a block or another
  # coder makes it a callback stream: each message is handed to the handler,
  # for that subscription, as Action Cable does.
  #
  # Prepended to ActionCable::Channel::Base; the signature is the same in
  # Action Cable 5.0 through 8.x (checked against 6.1.7 and rails main).
  # Connections not served by Ferrocable pass straight through.
  module ChannelStreams
    KEY = :ferrocable_callback_stream
    # The channel-state key of the whisper stream (the core's
    # `fastlane::WHISPER_STATE`, anycable-go's `$w`).
    WHISPER_STATE = "$w"

    # Whether the `stream_from` being run on this thread has a callback.
    def self.callback?
      Thread.current[KEY] == true
    end

    # `whisper: true` (anycable-rails' option) lets the subscription's
    # clients whisper on this stream: the stream goes in the subscription's
    # `$w` state, where the server looks for it (one stream per
    # subscription, the last one named).
    def stream_from(broadcasting, callback = nil, coder: nil, whisper: false, &block)
      unless connection.server.is_a?(CableServer)
        return super(broadcasting, callback, coder: coder, &block)
      end

      Reply.current&.istate&.store(WHISPER_STATE, broadcasting.to_s) if whisper
      previous = Thread.current[KEY]
      Thread.current[KEY] = !(callback || block).nil? || !(coder.nil? || coder == ActiveSupport::JSON)
      begin
        super(broadcasting, callback, coder: coder, &block)
      ensure
        Thread.current[KEY] = previous
      end
    end
  end
end

ActionCable::Channel::Base.prepend(Ferrocable::ChannelStreams)
