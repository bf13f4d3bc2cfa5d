# frozen_string_literal: true

require "json"

module Ferrocable
  # Presence from channel code, as anycable-rails' presence API (checked
  # against anycable-rails 1.6.2 lib/anycable/rails/channel/presence.rb and
  # anycable 1.6.4 lib/anycable/socket.rb, rpc/handler.rb): include it in a
  # channel, then
  #
  #   def subscribed
  #     stream_for room
  #     join_presence(id: current_user.id, info: { name: current_user.name })
  #   end
  #
  # joins the subscription to the presence set of its stream (the first one
  # streamed in this action, or the one named), whose subscribers get the
  # `join`; `leave_presence` leaves it. Unsubscribing leaves too, and a
  # closed connection's presence expires after `presence_ttl`; the server
  # keeps the set (the broker: memory, or Redis for a cluster), one join
  # and one leave per id whatever its tabs. Clients ask for the set with
  # the `presence` command (`@anycable/web`'s `channel.presence`).
  #
  # The say travels in the call's reply (its `presence`, with the stream in
  # the subscription's `$p` state): embedded, to the session in this
  # process; behind `rake ferrocable:rpc`, as the RPC contract's `presence`
  # field, which the ferrocable binary and anycable-go apply alike.
  # Outside Ferrocable (plain Action Cable) both methods do nothing.
  module Presence
    # The channel-state key of the presence stream (anycable-go's `$p`).
    STATE = "$p"

    # Joins the presence set of `stream` as `id` with `info` (a Hash, sent
    # as JSON, or a String).
    def join_presence(stream = nil, id: user_presence_id, info: user_presence_info)
      reply = ferrocable_presence_reply
      return unless reply
      raise ArgumentError, "ID is required for presence tracking" if id.nil?

      stream ||= reply.streams.first || raise(ArgumentError, "Provide a stream name for presence updates")
      stream = stream.to_s
      stream_from(stream) unless reply.streams.include?(stream) || streaming?(stream)
      reply.istate[STATE] = stream
      info = info.to_json if info && !info.is_a?(String)
      reply.presence = { "type" => "join", "id" => id.to_s, "info" => info }.compact
    end

    # Leaves the presence set (the subscription's, whatever `id` says, as
    # AnyCable does).
    def leave_presence(id = user_presence_id)
      reply = ferrocable_presence_reply
      return unless reply
      raise ArgumentError, "ID is required for presence tracking" if id.nil?

      reply.presence = { "type" => "leave", "id" => id.to_s }
    end

    private

    # The default presence id: the connection's identifiers.
    def user_presence_id
      connection.connection_identifier
    end

    # The default presence info: none.
    def user_presence_info; end

    def ferrocable_presence_reply
      Reply.current if connection.server.is_a?(CableServer)
    end

    def streaming?(stream)
      respond_to?(:streams, true) && streams.respond_to?(:key?) && streams.key?(stream)
    end
  end
end
