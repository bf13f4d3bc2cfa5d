# frozen_string_literal: true

# A chat message, kept so a room's history survives reloads.
class Message < ApplicationRecord
  validates :room, :user, :body, presence: true
  validates :body, length: { maximum: 2000 }

  scope :recent_in, ->(room) { where(room: room).order(created_at: :desc, id: :desc).limit(50) }

  def as_message
    { type: "message", id: id, user: user, body: body, at: created_at.utc.iso8601 }
  end
end
