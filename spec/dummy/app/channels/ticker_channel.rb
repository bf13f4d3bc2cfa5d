# frozen_string_literal: true

# Transmits from a periodic timer, outside of any client command.
class TickerChannel < ApplicationCable::Channel
  periodically every: 0.2 do
    @ticks = (@ticks || 0) + 1
    transmit({ tick: @ticks })
  end

  def subscribed
    stream_from "ticker"
  end
end
