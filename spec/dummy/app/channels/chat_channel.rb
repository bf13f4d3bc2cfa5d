# frozen_string_literal: true

# Rooms with history of what this subscription did (instance variables), a
# hello transmitted from `subscribed`, and the usual stream / broadcast moves.
class ChatChannel < ApplicationCable::Channel
  def subscribed
    reject if params[:room] == "secret"
    @room = params[:room]
    @said = []
    ApplicationCable::Connection.events << [:subscribed, user_name, @room]
    transmit({ hello: user_name })
    stream_from "chat_#{@room}"
  end

  def unsubscribed
    ApplicationCable::Connection.events << [:unsubscribed, user_name, @room]
  end

  def speak(data)
    @said << data["text"]
    ActionCable.server.broadcast("chat_#{@room}", { text: data["text"], from: user_name })
  end

  def history
    transmit({ said: @said, room: @room })
  end

  def follow(data)
    stream_from data["stream"]
  end

  # A callback stream with a coder: Ruby runs for each message.
  def follow_with_callback(data)
    stream_from(data["stream"], coder: ActiveSupport::JSON) { |message| transmit({ via_callback: message }) }
  end

  def unfollow(data)
    stop_stream_from data["stream"]
  end

  def follow_me
    stream_for current_user
  end

  def leave
    stop_all_streams
  end

  def kick
    connection.close(reason: "remote", reconnect: false)
  end

  private

  def user_name
    current_user.respond_to?(:name) ? current_user.name : current_user
  end
end
