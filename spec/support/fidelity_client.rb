# frozen_string_literal: true

require "ws_client"

# The specs' WebSocket client (websocket-driver over TCP) with what the
# fidelity app needs on top: the handshake waits as long as the fidelity
# specs wait for anything (a busy machine is not a failure), a refused
# handshake raises Refused with the HTTP status the server answered, and the
# next message is awaited with that same generous bound.
class FidelityClient < WsClient
  # The server answered the upgrade request with something other than 101.
  class Refused < StandardError
    attr_reader :status

    def initialize(url, status, reason)
      @status = status
      super("handshake with #{url} refused: HTTP #{status} (#{reason})")
    end
  end

  # Same as WsClient#initialize, but with a bounded wait of `open_timeout`
  # and a refusal reported as such instead of as a timeout.
  def initialize(url, headers: {}, protocols: ["actioncable-v1-json"], open_timeout: FidelityApp::WAIT) # rubocop:disable Lint/MissingSuper
    @url = url
    uri = URI(url)
    @socket = TCPSocket.new(uri.host, uri.port)
    @driver = WebSocket::Driver.client(self, protocols: protocols)
    headers.each { |k, v| @driver.set_header(k, v) }
    @messages = TimedQueue.new
    @closed = TimedQueue.new
    @opened = TimedQueue.new
    @driver.on(:open) do
      @protocol = @driver.protocol
      @opened << :open
    end
    @driver.on(:error) { |e| @error = e.message }
    @arrivals = {}.compare_by_identity
    @arrivals_lock = Mutex.new
    @driver.on(:message) do |e|
      message = JSON.parse(e.data)
      @arrivals_lock.synchronize { @arrivals[message] = Process.clock_gettime(Process::CLOCK_MONOTONIC) }
      @messages << message
    end
    @driver.on(:close) do |e|
      @close_code = e.code
      @closed << e.code
      @opened << :closed
    end
    @driver.start
    @reader = Thread.new do
      loop do
        data = @socket.readpartial(65_536)
        @driver.parse(data)
      end
    rescue IOError, Errno::ECONNRESET, Errno::EPIPE
      @closed << :eof
      @opened << :eof
    end
    outcome = @opened.pop(timeout: open_timeout)
    return if outcome == :open

    @socket.close rescue nil # rubocop:disable Style/RescueModifier
    @reader.kill
    raise Timeout::Error, "no handshake answer from #{url} within #{open_timeout}s" if outcome.nil?

    raise Refused.new(url, @driver.status, @error || outcome)
  end

  # When `message` (a received Hash) arrived, on the monotonic clock: the
  # order of replies across sockets.
  def arrived_at(message)
    @arrivals_lock.synchronize { @arrivals.fetch(message) }
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
