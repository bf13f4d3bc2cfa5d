# frozen_string_literal: true

# Tells the client what the connection saw of its upgrade request.
class RequestChannel < ApplicationCable::Channel
  def subscribed
    transmit(connection.request_seen.merge("user" => current_user.email))
  end
end
