# frozen_string_literal: true

# `slow` takes 4 seconds, as a report or an external API call would; `fast`
# answers at once. `slow` also waits (up to a minute) until `fast` has run
# for the same token, so that whether one caller holds up another shows as
# the order of the replies, whatever the speed of the machine.
class SlowChannel < ApplicationCable::Channel
  FAST_CALLS = Concurrent::Map.new

  def slow(data)
    sleep 4
    FAST_CALLS.compute_if_absent(data["token"]) { Concurrent::Event.new }.wait(60)
    transmit({ "action" => "slow", "token" => data["token"] })
  end

  def fast(data)
    FAST_CALLS.compute_if_absent(data["token"]) { Concurrent::Event.new }.set
    transmit({ "action" => "fast", "token" => data["token"] })
  end
end
