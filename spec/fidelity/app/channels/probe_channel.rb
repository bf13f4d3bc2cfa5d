# frozen_string_literal: true

# Counts how often `subscribed` ran for a probe (to see what a duplicate
# subscribe does), fails on request (to see the connection's rescue_from),
# and says who it answers for (a method named like the connection's
# identifier: Action Cable's delegation to the connection comes first).
class ProbeChannel < ApplicationCable::Channel
  SUBSCRIBED = Concurrent::Map.new

  def subscribed
    transmit({ "subscribed" => SUBSCRIBED.compute(params[:probe]) { |count| (count || 0) + 1 } })
  end

  def count
    transmit({ "subscribed" => SUBSCRIBED[params[:probe]] })
  end

  def whoami
    transmit({ "current_user" => current_user.respond_to?(:email) ? current_user.email : current_user })
  end

  def current_user
    "the channel's own current_user"
  end

  def explode(data)
    raise ApplicationCable::ActionFailed, "exploded: #{data['why']}"
  end
end
