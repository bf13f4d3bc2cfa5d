# frozen_string_literal: true

require "ws_client"

# The specs' WebSocket client (websocket-driver over TCP) with what the
# fidelity app needs on top: the handshake and the next message are awaited
# as long as the fidelity specs wait for anything (a busy machine is not a
# failure), and a timeout says what was awaited.
class FidelityClient < WsClient
  Refused = WsClient::Refused

  def initialize(url, open_timeout: FidelityApp::WAIT, **options)
    super(url, open_timeout: open_timeout, **options)
  end

  # The next message that is not a ping; `waiting_for` says in the error
  # what did not come.
  def receive(timeout: FidelityApp::WAIT, waiting_for: nil)
    super(timeout: timeout)
  rescue Timeout::Error => e
    raise Timeout::Error, [e.message, waiting_for && "waiting for #{waiting_for}", "on #{url}"].compact.join(", ")
  end

  def welcome
    message = receive
    raise "expected welcome, got #{message.to_json}" unless message["type"] == "welcome"

    message
  end

  def wait_closed(timeout: FidelityApp::WAIT)
    super
  end

  # Subscribes and returns the messages up to and including the
  # confirmation (transmissions from `subscribed` come first). Raises with
  # what came instead if the subscription is rejected or something else
  # arrives.
  def subscribe_confirmed(identifier)
    subscribe(identifier)
    messages = []
    loop do
      message = receive
      messages << message
      return messages if message == { "type" => "confirm_subscription", "identifier" => identifier }
      raise "subscription #{identifier} not confirmed: got #{messages.to_json}" if message["type"]
    end
  end

  def unsubscribe(identifier)
    send_json(command: "unsubscribe", identifier: identifier)
  end
end
