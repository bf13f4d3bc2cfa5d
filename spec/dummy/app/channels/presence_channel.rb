# frozen_string_literal: true

# Presence from channel code (Ferrocable::Presence, anycable-rails' API):
# joins the room's presence set on subscribe as the user, with their name
# as info; `leave` and `rejoin` say so from actions.
class PresenceChannel < ApplicationCable::Channel
  include Ferrocable::Presence

  def subscribed
    stream_from "presence_#{params[:room]}"
    join_presence(info: { name: user_name })
  end

  def leave
    leave_presence
  end

  def rejoin(data)
    join_presence("presence_#{params[:room]}", id: data["id"], info: data["info"])
  end

  private

  def user_presence_id
    "u-#{user_name}"
  end

  def user_name
    current_user.respond_to?(:name) ? current_user.name : current_user
  end
end
