# frozen_string_literal: true

# A typing indicator: clients whisper to the others in the room
# (`stream_from ..., whisper: true`); the application sees no whisper.
class TypingChannel < ApplicationCable::Channel
  def subscribed
    stream_from "typing_#{params[:room]}", whisper: true
  end
end
