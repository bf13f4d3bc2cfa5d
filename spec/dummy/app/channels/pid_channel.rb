# frozen_string_literal: true

# Tells which process serves the subscription; `shout` broadcasts to all.
class PidChannel < ApplicationCable::Channel
  def subscribed
    transmit({ pid: Process.pid })
    stream_from "pids"
  end

  def shout(data)
    ActionCable.server.broadcast("pids", { shout: data["text"], from_pid: Process.pid })
  end
end
