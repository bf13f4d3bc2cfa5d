# frozen_string_literal: true

require "socket"
require "ports"

# A redis-server owned by a spec, on a reserved port (see Ports), without
# persistence; stopped by PID. `options` are more redis-server flags (TLS).
class RedisProcess
  attr_reader :port

  def initialize(*options)
    @port = Ports.reserve
    @pid = spawn("redis-server", "--port", @port.to_s, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                 *options, out: File::NULL, err: File::NULL)
    deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + 10
    until ping
      raise "redis-server did not start" if Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline

      sleep 0.05
    end
  end

  def url
    "redis://127.0.0.1:#{@port}"
  end

  def ping
    s = TCPSocket.new("127.0.0.1", @port)
    s.write("PING\r\n")
    s.gets == "+PONG\r\n"
  rescue Errno::ECONNREFUSED
    false
  ensure
    s&.close
  end

  def stop
    Process.kill("TERM", @pid)
    Process.wait(@pid)
  rescue Errno::ESRCH, Errno::ECHILD
    nil
  end
end
