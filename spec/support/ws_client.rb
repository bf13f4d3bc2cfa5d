# frozen_string_literal: true

require "socket"
require "json"
require "websocket/driver"
require "timeout"
require "uri"
require "openssl"

# Queue#pop(timeout:) arrived in Ruby 3.2; Debian's Ruby is 3.1.
class TimedQueue
  def initialize
    @items = []
    @lock = Mutex.new
    @ready = ConditionVariable.new
  end

  def <<(item)
    @lock.synchronize do
      @items << item
      @ready.signal
    end
    self
  end

  def pop(timeout:)
    deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + timeout
    @lock.synchronize do
      while @items.empty?
        remaining = deadline - Process.clock_gettime(Process::CLOCK_MONOTONIC)
        return nil if remaining <= 0

        @ready.wait(@lock, remaining)
      end
      @items.shift
    end
  end
end

# A real WebSocket client for specs (websocket-driver over a TCP socket),
# speaking the Action Cable protocol. Messages are read by a thread into a
# queue; helpers wait for them with timeouts, so a spec never hangs.
class WsClient
  attr_reader :url, :messages, :protocol, :close_code

  # The server answered the upgrade request with something other than 101.
  class Refused < StandardError
    attr_reader :status

    def initialize(url, status, reason)
      @status = status
      super("handshake with #{url} refused: HTTP #{status} (#{reason})")
    end
  end

  # Waits up to `open_timeout` for the handshake's answer (generous: a busy
  # machine is not a failure); a refused handshake raises Refused with the
  # HTTP status. A wss:// URL is TLS, checked with `ssl_context`.
  def initialize(url, headers: {}, protocols: ["actioncable-v1-json"], open_timeout: 30, ssl_context: nil)
    @url = url
    uri = URI(url)
    @socket = TCPSocket.new(uri.host, uri.port)
    @socket = tls(@socket, uri, ssl_context || OpenSSL::SSL::SSLContext.new) if uri.scheme == "wss"
    @driver = WebSocket::Driver.client(self, protocols: protocols)
    headers.each { |k, v| @driver.set_header(k, v) }
    @messages = TimedQueue.new
    @closed = TimedQueue.new
    @opened = TimedQueue.new
    @arrivals = {}.compare_by_identity
    @arrivals_lock = Mutex.new
    @driver.on(:open) do
      @protocol = @driver.protocol
      @opened << :open
    end
    @driver.on(:error) { |e| @error = e.message }
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
    rescue IOError, Errno::ECONNRESET, Errno::EPIPE, OpenSSL::SSL::SSLError
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

  private def tls(socket, uri, context)
    ssl = OpenSSL::SSL::SSLSocket.new(socket, context)
    ssl.sync_close = true
    ssl.hostname = uri.host
    ssl.connect
    ssl
  end

  # When `message` (a received Hash) arrived, on the monotonic clock: the
  # order of replies across sockets.
  def arrived_at(message)
    @arrivals_lock.synchronize { @arrivals.fetch(message) }
  end

  def write(data)
    @socket.write(data)
  rescue IOError, Errno::EPIPE, Errno::ECONNRESET
    nil
  end

  def send_json(hash)
    @driver.text(hash.to_json)
  end

  def send_text(text)
    @driver.text(text)
  end

  # The next message that is not a ping.
  def receive(timeout: 30)
    deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + timeout
    loop do
      remaining = deadline - Process.clock_gettime(Process::CLOCK_MONOTONIC)
      raise Timeout::Error, "no message within #{timeout}s" if remaining <= 0

      message = @messages.pop(timeout: remaining)
      raise Timeout::Error, "no message within #{timeout}s" if message.nil?
      return message unless message["type"] == "ping"
    end
  end

  # Asserts nothing but pings arrives for `duration`.
  def silent?(duration)
    deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + duration
    loop do
      remaining = deadline - Process.clock_gettime(Process::CLOCK_MONOTONIC)
      return true if remaining <= 0

      message = @messages.pop(timeout: remaining)
      return true if message.nil?
      return false unless message["type"] == "ping"
    end
  end

  def wait_closed(timeout: 30)
    @closed.pop(timeout: timeout)
  end

  def welcome(timeout: 30)
    message = receive(timeout: timeout)
    raise "expected welcome, got #{message}" unless message["type"] == "welcome"

    message
  end

  def subscribe(identifier)
    send_json(command: "subscribe", identifier: identifier)
  end

  def perform(identifier, data)
    send_json(command: "message", identifier: identifier, data: data.to_json)
  end

  def close
    @driver.close
    wait_closed(timeout: 2)
    @socket.close rescue nil
    @reader.kill
  end
end
