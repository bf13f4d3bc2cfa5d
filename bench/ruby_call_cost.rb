# frozen_string_literal: true

# The Ruby path's own cost per call: the bench app (bench/app, production
# mode), N clients' lives (connect, subscribe to BenchmarkChannel, perform
# `echo`, unsubscribe, disconnect) run in-process through each mode's
# handler (the RPC server's, behind the ferrocable binary or anycable-go;
# the embedded server's) with the hashes the extension passes: no sockets,
# no gRPC, the Ruby side only. The application's own code (Connection#connect, the channel's
# `subscribed` and action; it defines no `disconnect` or `unsubscribed`) is timed separately, so what is
# left is ours and Action Cable's: the overhead per call.
#
#   ruby bench/ruby_call_cost.rb [N]            (after rake compile)
#   ROUNDS=7 ruby bench/ruby_call_cost.rb 5000
#
# Prints a Markdown table per mode: per call kind, µs per call in all, in
# the application's code, and the rest (the best of ROUNDS rounds).

ENV["RAILS_ENV"] = "production"
ENV["BENCH_LOG"] ||= File::NULL
require_relative "app/config/environment"
Rails.application.eager_load!

n = Integer(ARGV[0] || 2000)
rounds = Integer(ENV.fetch("ROUNDS", 5))

# Time spent in the application's code, per thread (this bench runs one).
module AppClock
  @spent = 0.0
  class << self
    attr_accessor :spent

    def time
      started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
      yield
    ensure
      self.spent += Process.clock_gettime(Process::CLOCK_MONOTONIC) - started
    end
  end

  def self.wrap(klass, *methods)
    klass.prepend(Module.new do
      methods.each do |m|
        # The same arity as the app's method: Action Cable passes an
        # action its data only when the method takes one argument.
        if klass.instance_method(m).arity == 1
          define_method(m) { |arg| AppClock.time { super(arg) } }
        else
          define_method(m) { AppClock.time { super() } }
        end
      end
    end)
  end
end
AppClock.wrap(ApplicationCable::Connection, :connect)
AppClock.wrap(BenchmarkChannel, :subscribed, :echo)

headers = {
  "cookie" => "_bench_session=abc; theme=dark", "origin" => "http://127.0.0.1:3000",
  "REMOTE_ADDR" => "127.0.0.1"
}
env = { "url" => "http://127.0.0.1:8080/cable", "headers" => headers, "cstate" => {}, "istate" => {} }
identifier = '{"channel":"BenchmarkChannel"}'
echo = '{"action":"echo","payload":"hello"}'

# One client's life as the extension passes it to each handler: connect,
# subscribe, perform, unsubscribe, disconnect (the stateless RPC calls
# carry the identifiers and channel state the server keeps for them).
rpc = lambda do |handler, sid|
  ids = nil
  istate = nil
  command = lambda do |name, data = ""|
    { "id" => 1, "kind" => "command", "sid" => sid, "command" => name, "identifier" => identifier, "data" => data,
      "connection_identifiers" => ids, "env" => env.merge("istate" => istate || {}) }
  end
  [
    ["connect", -> { { "id" => 1, "kind" => "connect", "sid" => sid, "env" => env } }, ->(r) { ids = r["identifiers"] }],
    ["subscribe", -> { command.call("subscribe") }, ->(r) { istate = r["istate"] }],
    ["perform (echo)", -> { command.call("message", echo) }, nil],
    ["unsubscribe", -> { command.call("unsubscribe") }, nil],
    ["disconnect", lambda {
      { "id" => 1, "kind" => "disconnect", "sid" => sid, "subscriptions" => [identifier], "identifiers" => ids,
        "env" => env.merge("istate" => { identifier => (istate || {}).to_json }) }
    }, nil]
  ]
end
embedded = lambda do |_handler, sid|
  command = ->(name, data = "") { { "id" => 1, "kind" => "command", "sid" => sid, "command" => name, "identifier" => identifier, "data" => data } }
  [
    ["connect", -> { { "id" => 1, "kind" => "connect", "sid" => sid, "env" => env } }, nil],
    ["subscribe", -> { command.call("subscribe") }, nil],
    ["perform (echo)", -> { command.call("message", echo) }, nil],
    ["unsubscribe", -> { command.call("unsubscribe") }, nil],
    ["disconnect", -> { { "id" => 1, "kind" => "disconnect", "sid" => sid, "subscriptions" => [identifier] } }, nil]
  ]
end

cable = Ferrocable::CableServer.new
modes = {
  "RPC server (`rake ferrocable:rpc`)" => [Ferrocable::RpcHandler.new, rpc],
  "embedded, the app's middleware not run (bench/ruby_connect_cost.rb times it)" =>
    [Ferrocable::EmbeddedHandler.new(cable_server: cable, handshake: Ferrocable::Handshake.new(cable, app: nil)),
     embedded]
}

# [[kind, seconds in all, seconds in the app's code], ...] for n clients.
def measure(handler, life, n, prefix)
  totals = Hash.new { |h, k| h[k] = [0.0, 0.0] }
  n.times do |i|
    life.call(handler, "#{prefix}#{i}").each do |kind, call, after|
      AppClock.spent = 0.0
      started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
      reply = handler.call(call.call)
      totals[kind][0] += Process.clock_gettime(Process::CLOCK_MONOTONIC) - started
      totals[kind][1] += AppClock.spent
      raise "#{kind} failed: #{reply.inspect}" unless reply["status"] == "success"

      after&.call(reply)
    end
  end
  totals
end

puts "Ruby time per call (#{n} clients' lives, best of #{rounds} per call kind, Rails #{Rails.version}, " \
     "Ruby #{RUBY_VERSION}#{' +YJIT' if defined?(RubyVM::YJIT) && RubyVM::YJIT.enabled?})"
modes.each do |label, (handler, life)|
  measure(handler, life, 300, "warm-") # warm up
  runs = Array.new(rounds) do |round|
    warn "  #{label}: round #{round + 1}/#{rounds}"
    measure(handler, life, n, "r#{round}-")
  end
  puts
  puts "#{label}:"
  puts
  puts "| call | in all | the application's code | the rest (ours and Action Cable's) |"
  puts "| --- | ---: | ---: | ---: |"
  runs.first.each_key do |kind|
    total, app = runs.map { |run| run[kind] }.min_by(&:first).map { |s| s / n * 1_000_000 }
    puts format("| %s | %.1f µs | %.1f µs | %.1f µs |", kind, total, app, total - app)
  end
end
