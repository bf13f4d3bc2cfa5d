# frozen_string_literal: true

# Everyone's notes go over one broadcasting; the callback passes each user
# only their own.
class NotesChannel < ApplicationCable::Channel
  def subscribed
    stream_from "notes", coder: ActiveSupport::JSON do |note|
      transmit(note) if note["user_id"] == current_user.id
    end
  end

  def add(data)
    note = current_user.notes.create!(text: data["text"])
    ActionCable.server.broadcast("notes", note.to_broadcast)
  end
end
