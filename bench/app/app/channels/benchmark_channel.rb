# frozen_string_literal: true

# websocket-shootout's channel: echo transmits back; broadcast sends to
# everyone and answers the sender with broadcastResult.
class BenchmarkChannel < ApplicationCable::Channel
  def subscribed
    if ENV["BENCH_STREAM"] == "callback"
      # The same output through a stream callback with a coder: Ruby runs
      # for every message and subscriber (bench/compare's
      # ferrocable-embedded-callback target).
      stream_from("all", coder: ActiveSupport::JSON) { |message| transmit message }
    else
      stream_from "all"
    end
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
