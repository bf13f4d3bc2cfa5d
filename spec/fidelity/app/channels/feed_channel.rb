# frozen_string_literal: true

# A plain stream: what is broadcast to "feed" goes to every subscriber as is.
class FeedChannel < ApplicationCable::Channel
  def subscribed
    stream_from "feed"
  end

  def shout(data)
    ActionCable.server.broadcast("feed", { "from" => current_user.email, "text" => data["text"] })
  end
end
