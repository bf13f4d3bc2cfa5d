# frozen_string_literal: true

# The Ruby path's own cost per call: the bench app (bench/app, production
# mode), the RPC server's handler (`rake ferrocable:rpc`, behind the
# ferrocable binary or anycable-go), each call kind run N times in-process
# (no sockets, no gRPC: the Ruby side only) with the hashes the extension
# passes. The application's own code (Connection#connect, the channel's
# `subscribed` and action; it defines no `disconnect` or `unsubscribed`) is timed separately, so what is
# left is ours and Action Cable's: the overhead per call.
#
#   ruby bench/ruby_call_cost.rb [N]            (after rake compile)
#   ROUNDS=7 ruby bench/ruby_call_cost.rb 5000
#
# Prints a Markdown table: per call kind, µs per call in all, in the
# application's code, and the rest (best of ROUNDS rounds each).

ENV["RAILS_ENV"] = "production"
ENV["BENCH_LOG"] ||= File::NULL
require_relative "app/config/environment"
Rails.application.eager_load!

n = Integer(ARGV[0] || 3000)
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
handler = Ferrocable::RpcHandler.new
identifiers = handler.call("id" => 0, "kind" => "connect", "sid" => "s", "env" => env)["identifiers"]
istate = handler.call("id" => 0, "kind" => "command", "sid" => "s", "command" => "subscribe",
                      "identifier" => identifier, "data" => "", "connection_identifiers" => identifiers,
                      "env" => env)["istate"]
command_env = env.merge("istate" => istate)
calls = {
  "connect" => { "id" => 1, "kind" => "connect", "sid" => "s", "env" => env },
  "subscribe" => { "id" => 1, "kind" => "command", "sid" => "s", "command" => "subscribe",
                   "identifier" => identifier, "data" => "", "connection_identifiers" => identifiers,
                   "env" => env },
  "perform (echo)" => { "id" => 1, "kind" => "command", "sid" => "s", "command" => "message",
                        "identifier" => identifier, "data" => '{"action":"echo","payload":"hello"}',
                        "connection_identifiers" => identifiers, "env" => command_env },
  "unsubscribe" => { "id" => 1, "kind" => "command", "sid" => "s", "command" => "unsubscribe",
                     "identifier" => identifier, "data" => "", "connection_identifiers" => identifiers,
                     "env" => command_env },
  "disconnect" => { "id" => 1, "kind" => "disconnect", "sid" => "s", "subscriptions" => [identifier],
                    "identifiers" => identifiers, "env" => command_env }
}

def measure(handler, call, n)
  AppClock.spent = 0.0
  started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
  n.times do
    reply = handler.call(call)
    raise "#{call['kind']} failed: #{reply.inspect}" unless reply["status"] == "success"
  end
  [Process.clock_gettime(Process::CLOCK_MONOTONIC) - started, AppClock.spent]
end

rows = calls.map do |label, call|
  measure(handler, call, 300) # warm up
  best = Array.new(rounds) do |round|
    warn "  #{label}: round #{round + 1}/#{rounds}"
    measure(handler, call, n)
  end.min_by(&:first)
  total, app = best.map { |s| s / n * 1_000_000 }
  [label, total, app, total - app]
end

puts "RPC handler, Ruby time per call (#{n} calls each, best of #{rounds}, Rails #{Rails.version}, " \
     "Ruby #{RUBY_VERSION}#{' +YJIT' if defined?(RubyVM::YJIT) && RubyVM::YJIT.enabled?})"
puts
puts "| call | in all | the application's code | the rest (ours and Action Cable's) |"
puts "| --- | ---: | ---: | ---: |"
rows.each { |label, total, app, rest| puts format("| %s | %.1f µs | %.1f µs | %.1f µs |", label, total, app, rest) }
