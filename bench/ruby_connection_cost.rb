# frozen_string_literal: true

# What an embedded connection costs the Rails process: a server runs the
# spec dummy app in a child process; N clients (in this process) connect and
# subscribe to ChatChannel; the child reports its RSS and Ruby heap before
# and after. Run: ruby bench/ruby_connection_cost.rb [N]   (after rake compile)

require "socket"
require "json"
$LOAD_PATH.unshift File.expand_path("../spec/support", __dir__)
require "ws_client"
require "process_child"

n = Integer(ARGV[0] || 1000)
root = File.expand_path("..", __dir__)
child_script = <<~RUBY
  $stdout.sync = true
  ENV["RAILS_ENV"] = "test"
  require #{File.join(root, 'spec/dummy/config/environment').inspect}
  require "process_stats"
  def report(label)
    GC.start
    rss = ProcessStats.rss_kib
    puts "\#{label} rss_kib=\#{rss} heap_live_slots=\#{GC.stat[:heap_live_slots]} " \\
         "memsize_kib=\#{ObjectSpace.respond_to?(:memsize_of_all) ? ObjectSpace.memsize_of_all / 1024 : 0} " \\
         "sessions=\#{$server&.handler&.session_count.to_i}"
  end
  require "objspace"
  $server = Ferrocable::Server.new(port: 0, worker_pool_size: 4, log_level: "warn").start
  puts "READY \#{$server.port}"
  while (line = $stdin.gets)
    report(line.strip)
  end
RUBY

child = ProcessChild.new(ProcessChild.ruby(child_script))
port = child.wait_for(/READY (\d+)/, timeout: 120)[1].to_i
sleep 0.5
child.input.puts "before"
before = child.wait_for(/^before .*$/)[0]
clients = Array.new(n) do |i|
  c = WsClient.new("ws://127.0.0.1:#{port}/cable?guest=u#{i}")
  c.welcome
  id = { channel: "ChatChannel", room: (i % 10).to_s }.to_json
  c.subscribe(id)
  c.receive
  c.receive
  warn "  #{i + 1}/#{n} connected" if ((i + 1) % 250).zero?
  c
end
sleep 1
child.input.puts "after"
after = child.wait_for(/^after .*$/, timeout: 120)[0]
parse = ->(line) { line.scan(/(\w+)=(\d+)/).to_h { |k, v| [k, v.to_i] } }
b = parse.call(before)
a = parse.call(after)
puts "embedded connections, each with one ChatChannel subscription (#{n} clients)"
puts format("%-28s %12s %12s %14s", "", "before", "after", "per connection")
puts format("%-28s %12d %12d %12.1f KiB", "process RSS (KiB)", b["rss_kib"], a["rss_kib"],
            (a["rss_kib"] - b["rss_kib"]).to_f / n)
puts format("%-28s %12d %12d %12.1f", "Ruby live heap slots", b["heap_live_slots"], a["heap_live_slots"],
            (a["heap_live_slots"] - b["heap_live_slots"]).to_f / n)
puts format("%-28s %12d %12d %12.1f KiB", "Ruby object memory (KiB)", b["memsize_kib"], a["memsize_kib"],
            (a["memsize_kib"] - b["memsize_kib"]).to_f / n)
puts "live connection objects in the handler: #{a['sessions']}"
clients.each(&:close)
child.kill
