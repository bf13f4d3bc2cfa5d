# frozen_string_literal: true

# One subscription per room: sends the room's history, streams its messages,
# and joins the room's presence set (Ferrocable::Presence: the server keeps
# "who is here", in Redis when Puma runs several workers, and sends the
# joins and leaves to the room). The page whispers "typing" on the room's
# stream (`whisper: true`): the server passes it to the others, no Ruby runs.
class ChatChannel < ApplicationCable::Channel
  include Ferrocable::Presence

  def subscribed
    @room = params[:room].to_s.strip
    return reject if @room.empty? || @room.length > 64

    # `worker`: the process serving this socket (one of several under a
    # Puma cluster), shown on the page.
    transmit({ type: "history", worker: Process.pid, messages: Message.recent_in(@room).reverse.map(&:as_message) })
    stream_from ChatChannel.broadcasting_for(@room), whisper: true
    join_presence(id: current_user, info: { name: current_user })
  end

  def speak(data)
    body = data["body"].to_s.strip
    return if body.empty?

    message = Message.create!(room: @room, user: current_user, body: body[0, 2000], created_at: Time.now)
    ChatChannel.broadcast_to(@room, message.as_message)
  end
end
