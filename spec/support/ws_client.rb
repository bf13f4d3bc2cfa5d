# frozen_string_literal: true

require "socket"
require "json"
require "websocket/driver"
require "timeout"
require "uri"

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

  # `timeout` bounds the handshake (a server under GC.stress answers slowly).
  def initialize(url, headers: {}, protocols: ["actioncable-v1-json"], timeout: 5)
    @url = url
    uri = URI(url)
    @socket = TCPSocket.new(uri.host, uri.port)
    @driver = WebSocket::Driver.client(self, protocols: protocols)
    headers.each { |k, v| @driver.set_header(k, v) }
    @messages = TimedQueue.new
    @closed = TimedQueue.new
    @opened = TimedQueue.new
    @driver.on(:open) { @protocol = @driver.protocol; @opened << true }
    @driver.on(:message) { |e| @messages << JSON.parse(e.data) }
    @driver.on(:close) do |e|
      @close_code = e.code
      @closed << e.code
    end
    @driver.start
    @reader = Thread.new do
      loop do
        data = @socket.readpartial(65_536)
        @driver.parse(data)
      end
    rescue IOError, Errno::ECONNRESET, Errno::EPIPE
      @closed << :eof
    end
    raise Timeout::Error, "handshake with #{url} failed" unless @opened.pop(timeout: timeout)
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
  def receive(timeout: 5)
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

  def wait_closed(timeout: 5)
    @closed.pop(timeout: timeout)
  end

  def welcome(timeout: 5)
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
