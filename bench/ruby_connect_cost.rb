# frozen_string_literal: true

# What an embedded connect costs in Ruby, with the application's Rack
# middleware run around it (as a request to the mounted Action Cable server
# runs under Puma) and without: the bench app (bench/app, production mode,
# Rails' default middleware stack), its Connection#connect, N connects and
# their disconnects through the same handler the server uses, in-process
# (no sockets: only the Ruby side is timed). Prints microseconds per
# connect for each, best of ROUNDS rounds.
#
#   ruby bench/ruby_connect_cost.rb [N]    (after rake compile)

ENV["RAILS_ENV"] = "production"
ENV["BENCH_LOG"] ||= File::NULL
require_relative "app/config/environment"

n = Integer(ARGV[0] || 2000)
rounds = Integer(ENV.fetch("ROUNDS", 5))
headers = {
  "host" => "127.0.0.1:8080", "upgrade" => "websocket", "connection" => "Upgrade",
  "sec-websocket-key" => "dGhlIHNhbXBsZSBub25jZQ==", "sec-websocket-version" => "13",
  "sec-websocket-protocol" => "actioncable-v1-json, actioncable-unsupported",
  "origin" => "http://127.0.0.1:3000", "user-agent" => "Mozilla/5.0 (X11; Linux x86_64) ruby_connect_cost",
  "accept-language" => "en-US,en;q=0.9", "cookie" => "_bench_session=abc; theme=dark",
  "REMOTE_ADDR" => "127.0.0.1"
}
cable = Ferrocable::CableServer.new
handlers = {
  "with the app's middleware" => Ferrocable::EmbeddedHandler.new(cable_server: cable),
  "without (Connection#process only)" =>
    Ferrocable::EmbeddedHandler.new(cable_server: cable, handshake: Ferrocable::Handshake.new(cable, app: nil))
}

def run(handler, n, headers, prefix)
  started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
  n.times do |i|
    sid = "#{prefix}#{i}"
    reply = handler.call("kind" => "connect", "sid" => sid,
                         "env" => { "url" => "http://127.0.0.1:8080/cable", "headers" => headers })
    raise "connect failed: #{reply.inspect}" unless reply["status"] == "success"
  end
  elapsed = Process.clock_gettime(Process::CLOCK_MONOTONIC) - started
  n.times { |i| handler.call("kind" => "disconnect", "sid" => "#{prefix}#{i}", "identifiers" => "{}") }
  elapsed
end

results = handlers.to_h do |label, handler|
  run(handler, 200, headers, "warm") # warm up
  best = Array.new(rounds) do |round|
    warn "  #{label}: round #{round + 1}/#{rounds}"
    run(handler, n, headers, "r#{round}-")
  end.min
  [label, best / n * 1_000_000]
end
with, without = results.values
puts "Ruby time per embedded connect (#{n} connects, best of #{rounds}, Rails #{Rails.version}, " \
     "#{Rails.application.middleware.size} middleware)"
results.each { |label, us| puts format("  %-36s %8.1f µs", label, us) }
puts format("  %-36s %8.1f µs", "the middleware's share", with - without)
