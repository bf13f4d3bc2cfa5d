# frozen_string_literal: true

require "spec_helper"

# Every Ruby-visible entry point of the extension under GC.stress, in a child
# process that is the server (spec/support/gc_stress_server.rb); this process
# is its WebSocket client. GC.stress is process-wide, so a client inside the
# stressed process would be starved: here nothing the client does depends on
# how fast the stressed child runs, every wait is generously bounded, and the
# child is killed by PID if it hangs. GC_STRESS_RUNS=n repeats the run (how a
# rare crash is hunted).
RSpec.describe "The extension under GC.stress" do
  # A stressed child takes seconds per step on a busy machine; this bound
  # only turns a hang into a failure.
  step_seconds = 600
  runs = Integer(ENV.fetch("GC_STRESS_RUNS", "1"))

  define_method(:step_seconds) { step_seconds }

  # The next message from the stressed server; fails at once if it died.
  def from_server(child, client)
    deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + step_seconds
    begin
      client.receive(timeout: 1)
    rescue Timeout::Error
      raise "the stressed server exited (#{child.exit_status.inspect}):\n#{child.output}" if child.exit_status
      raise if Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline

      retry
    end
  end

  def run_once
    server = ProcessChild.ruby(file: File.join(ROOT, "spec", "support", "gc_stress_server.rb"))
    ProcessChild.run(server) do |child|
      port = child.wait_for(/^PORT (\d+)$/, timeout: step_seconds)[1].to_i
      client = WsClient.new("ws://127.0.0.1:#{port}/cable", open_timeout: step_seconds)
      expect(from_server(child, client)).to include("type" => "welcome")
      id = { channel: "GcChannel" }.to_json
      client.subscribe(id)
      expect(from_server(child, client)).to eq("identifier" => id, "message" => { "hello" => "gc" })
      expect(from_server(child, client)).to eq("identifier" => id, "type" => "confirm_subscription")
      child.wait_for(/^STEP SUBSCRIBED$/, timeout: step_seconds)
      child.input.puts "go"
      child.wait_for(/^STEP BROADCAST$/, timeout: step_seconds)
      expect(from_server(child, client)).to eq("identifier" => id, "message" => { "n" => 1 })
      expect(from_server(child, client)).to eq("identifier" => id, "message" => { "n" => 2 })
      client.close
      child.input.puts "go"
      status = child.wait_exit(timeout: step_seconds)
      expect(status.success?).to be(true), "exit #{status.inspect}:\n#{child.output}"
      expect(child.output).to include("GC STRESS OK")
    end
  end

  it "survives the whole lifecycle with GC.stress on", timeout: 3 * step_seconds * runs do
    runs.times { run_once }
  end
end
