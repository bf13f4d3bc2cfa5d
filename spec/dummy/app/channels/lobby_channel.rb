# frozen_string_literal: true

# Broadcasts from `subscribed` to the stream it just started.
class LobbyChannel < ApplicationCable::Channel
  def subscribed
    stream_from "lobby"
    ActionCable.server.broadcast("lobby", { joined: current_user.respond_to?(:name) ? current_user.name : current_user })
  end
end
