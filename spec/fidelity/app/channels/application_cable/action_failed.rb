# frozen_string_literal: true

module ApplicationCable
  # Raised by actions; the connection's rescue_from reports it to the client.
  class ActionFailed < StandardError
  end
end
