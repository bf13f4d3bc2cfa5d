# frozen_string_literal: true

# Exceptions in channel code: `?in=subscribed` raises there; actions raise,
# one is rescued by rescue_from.
class TroubleChannel < ApplicationCable::Channel
  class Handled < StandardError; end

  rescue_from Handled, with: :handled

  # `held` says it is running (`holding`), then waits until a spec opens `gate`.
  cattr_accessor :gate, default: Queue.new
  cattr_accessor :holding, default: Queue.new

  def subscribed
    raise "subscribed exploded" if params[:in] == "subscribed"

    stream_from "trouble"
  end

  def explode
    raise "action exploded"
  end

  def rescued
    raise Handled, "rescued by rescue_from"
  end

  def slow(data)
    sleep data["seconds"].to_f
    transmit({ slept: data["seconds"] })
  end

  def held
    holding << true
    gate.pop
    transmit({ held: "released" })
  end

  def unsubscribed
    raise "unsubscribed exploded" if params[:in] == "unsubscribed"
  end

  private

  def handled(error)
    transmit({ rescued: error.message })
  end
end
