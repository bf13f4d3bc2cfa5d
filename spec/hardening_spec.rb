# frozen_string_literal: true

require "spec_helper"

# Issue 16's attacks against the embedded server (`rake ferrocable:server`
# in a child process, so its memory and its log are its own): a client that
# floods pings and never reads, and a client that floods the log. A
# well-behaved client alongside must keep receiving. The child is killed by
# PID at the end.
RSpec.describe "The embedded server under attack", timeout: 120 do
  def with_server
    broadcast_port = reserve_port
    env = { "ANYCABLE_PORT" => "0", "ANYCABLE_HTTP_BROADCAST_PORT" => broadcast_port.to_s,
            "DUMMY_LOG" => "/dev/null", "RUBYLIB" => File.join(ROOT, "lib") }
    child = ProcessChild.new(["rake", "-f", File.join(DUMMY_DIR, "Rakefile"), "ferrocable:server"], env: env)
    port = child.wait_for(/ listening addr=127\.0\.0\.1:(\d+)/)[1].to_i # the core's own line (the Rails log is off)
    yield child, port, broadcast_port
  ensure
    child&.kill
  end

  def raw_socket(port)
    socket = TCPSocket.new("127.0.0.1", port)
    socket.write("GET /cable?guest=raw HTTP/1.1\r\nHost: 127.0.0.1:#{port}\r\nConnection: Upgrade\r\n" \
                 "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n" \
                 "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
    expect(socket.readpartial(1024)).to start_with("HTTP/1.1 101")
    socket
  end

  # One masked client frame.
  def frame(opcode, payload)
    payload = payload.b
    head = [0x80 | opcode].pack("C")
    head << if payload.bytesize < 126
              [0x80 | payload.bytesize].pack("C")
            elsif payload.bytesize < 65_536
              [0x80 | 126, payload.bytesize].pack("Cn")
            else
              [0x80 | 127, payload.bytesize].pack("CQ>")
            end
    mask = [1, 2, 3, 4]
    head + mask.pack("C*") + payload.bytes.each_with_index.map { |b, i| b ^ mask[i % 4] }.pack("C*")
  end

  # Broadcasts to the room "proc" and waits for `client` to receive it; seconds.
  def round_trip(client, broadcast_port, n)
    started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
    response = http_post(broadcast_port, "/_broadcast", { stream: "chat_proc", data: { n: n }.to_json }.to_json)
    expect(response.code).to eq("201")
    expect(client.receive["message"]).to eq("n" => n)
    Process.clock_gettime(Process::CLOCK_MONOTONIC) - started
  end

  def figures(latencies)
    sorted = latencies.sort
    format("%<n>d round trips, p50 %<p50>.1f ms, max %<max>.1f ms",
           n: sorted.size, p50: sorted[sorted.size / 2] * 1000, max: sorted.last * 1000)
  end

  it "disconnects a client that floods pings and never reads, with bounded memory" do
    with_server do |child, port, broadcast_port|
      good = guest(port, "good")
      latencies = [round_trip(good, broadcast_port, 0)]
      before = ProcessStats.rss_kib(child.pid)
      batch = frame(0x9, "p" * 125) * 64
      flooders = Array.new(2) do
        Thread.new do
          socket = raw_socket(port)
          sent = 0
          Timeout.timeout(60) do
            loop do
              socket.write(batch)
              sent += batch.bytesize
            end
          end
        rescue Errno::ECONNRESET, Errno::EPIPE, IOError
          sent # the server dropped it
        end
      end
      peak = before
      n = 1
      while flooders.any?(&:alive?)
        latencies << round_trip(good, broadcast_port, n)
        peak = [peak, ProcessStats.rss_kib(child.pid)].max
        n += 1
      end
      sent = flooders.map(&:value)
      growth = peak - before
      puts "embedded ping flood: #{sent.sum >> 20} MiB of pings, then both flooders disconnected; " \
           "Rails process RSS #{before} -> peak #{peak} KiB (+#{growth}); well-behaved client: #{figures(latencies)}"
      expect(sent).to all(be_a(Integer))
      expect(growth).to be < 64 * 1024
      expect(child.output).to include("client too slow")
    end
  end

  it "writes a bounded log under a flood of bad frames and huge identifiers" do
    with_server do |child, port, broadcast_port|
      good = guest(port, "good")
      before = child.output.bytesize
      started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
      huge = { command: "unsubscribe", identifier: "i" * 60_000 }.to_json
      forged = { command: "unsubscribe", identifier: "x\nFORGED ERROR\e[2J" }.to_json
      attackers = [[huge, 500], ["x", 20_000], [forged, 100]].map do |text, count|
        Thread.new do
          client = WsClient.new("ws://127.0.0.1:#{port}/cable?guest=attacker")
          client.welcome
          count.times { client.send_text(text) }
          join(client, "done") # every frame before it has been read
        end
      end
      latencies = []
      n = 0
      while attackers.any?(&:alive?)
        latencies << round_trip(good, broadcast_port, n)
        n += 1
      end
      attackers.each(&:join)
      seconds = (Process.clock_gettime(Process::CLOCK_MONOTONIC) - started).ceil + 2
      logs = child.output.byteslice(before..)
      puts "embedded log flood: 500 x 60 KB identifiers, 20,000 malformed frames, 100 forging identifiers in " \
           "#{seconds - 2}+ s wrote #{logs.bytesize} log bytes in #{logs.lines.size} lines; " \
           "well-behaved client: #{figures(latencies)}"
      expect(logs.lines.count { |l| l.include?("unsubscribe from a channel not subscribed") }).to be <= 10 * seconds
      expect(logs.lines.count { |l| l.include?("client frame ignored") }).to be <= 10 * seconds
      expect(logs.lines).to all(satisfy { |l| l.bytesize < 600 })
      expect(logs).not_to include("\e")
      expect(logs.lines.grep(/\AFORGED/)).to be_empty
    end
  end
end
