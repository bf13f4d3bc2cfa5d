# frozen_string_literal: true

# Counts how often `subscribed` ran for a probe (to see what a duplicate
# subscribe does), and fails on request (to see the connection's rescue_from).
class ProbeChannel < ApplicationCable::Channel
  SUBSCRIBED = Concurrent::Map.new

  def subscribed
    transmit({ "subscribed" => SUBSCRIBED.compute(params[:probe]) { |count| (count || 0) + 1 } })
  end

  def count
    transmit({ "subscribed" => SUBSCRIBED[params[:probe]] })
  end

  def explode(data)
    raise ApplicationCable::ActionFailed, "exploded: #{data['why']}"
  end
end
