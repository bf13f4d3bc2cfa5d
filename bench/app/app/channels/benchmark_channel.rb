# frozen_string_literal: true

# websocket-shootout's channel: echo transmits back; broadcast sends to
# everyone and answers the sender with broadcastResult.
class BenchmarkChannel < ApplicationCable::Channel
  def subscribed
    stream_from "all"
  end

  def echo(data)
    transmit data
  end

  def broadcast(data)
    ActionCable.server.broadcast "all", data
    data["action"] = "broadcastResult"
    transmit data
  end
end
