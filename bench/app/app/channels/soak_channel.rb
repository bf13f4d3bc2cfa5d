# frozen_string_literal: true

# bench/soak's channel: one stream per room; speak broadcasts to the room,
# echo transmits back.
class SoakChannel < ApplicationCable::Channel
  def subscribed
    stream_from "soak:#{params[:room]}"
  end

  def speak(data)
    ActionCable.server.broadcast "soak:#{params[:room]}", { "text" => data["text"] }
  end

  def echo(data)
    transmit data
  end
end
