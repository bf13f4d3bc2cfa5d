# frozen_string_literal: true

# One subscription per room: sends the room's history, streams its messages,
# and keeps the "who is here" list (in this process: Ferrocable runs the
# channel objects for every socket here).
class ChatChannel < ApplicationCable::Channel
  PRESENCE = Hash.new { |h, room| h[room] = Hash.new(0) }
  PRESENCE_LOCK = Mutex.new

  def subscribed
    @room = params[:room].to_s.strip
    return reject if @room.empty? || @room.length > 64

    transmit({ type: "history", messages: Message.recent_in(@room).reverse.map(&:as_message) })
    stream_for @room
    PRESENCE_LOCK.synchronize { PRESENCE[@room][current_user] += 1 }
    announce_presence
  end

  def unsubscribed
    return unless @room

    PRESENCE_LOCK.synchronize do
      here = PRESENCE[@room]
      here[current_user] -= 1
      here.delete(current_user) if here[current_user] <= 0
    end
    announce_presence
  end

  def speak(data)
    body = data["body"].to_s.strip
    return if body.empty?

    message = Message.create!(room: @room, user: current_user, body: body[0, 2000], created_at: Time.now)
    ChatChannel.broadcast_to(@room, message.as_message)
  end

  private

  def announce_presence
    users = PRESENCE_LOCK.synchronize { PRESENCE[@room].keys.sort }
    ChatChannel.broadcast_to(@room, { type: "presence", users: users })
  end
end
