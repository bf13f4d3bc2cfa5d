# frozen_string_literal: true

require "json"
require "open3"
require "ws_client"

# Drives spec/support/fidelity_notes_client.mjs (the official
# @rails/actioncable client in node) from a spec: one browser tab of a user,
# what it saw read as events, stopped by closing its stdin (KILL by PID if it
# does not exit).
class FidelityJsClient
  SCRIPT = File.join(__dir__, "fidelity_notes_client.mjs")
  E2E_DIR = File.expand_path("../../tests/e2e", __dir__)

  attr_reader :seen

  def self.install
    return if File.directory?(File.join(E2E_DIR, "node_modules", "@rails", "actioncable"))

    system("npm", "ci", "--silent", "--no-audit", "--no-fund", chdir: E2E_DIR, exception: true)
  end

  def initialize(url, origin:, cookie: nil)
    @stdin, out, @wait = Open3.popen2e("node", SCRIPT, url, origin, cookie.to_s)
    @events = TimedQueue.new
    @seen = []
    @reader = Thread.new do
      out.each_line do |line|
        event = begin
          JSON.parse(line)
        rescue JSON::ParserError
          { "event" => "output", "data" => line.chomp }
        end
        @seen << event
        @events << event unless event["event"] == "output"
      end
    end
  end

  # The next event the client reported (connected, received, ...).
  def next_event(timeout: FidelityApp::WAIT)
    event = @events.pop(timeout: timeout)
    raise Timeout::Error, "@rails/actioncable client reported nothing within #{timeout}s; saw #{@seen.to_json}" unless event

    event
  end

  def add(text)
    @stdin.puts({ add: text }.to_json)
    @stdin.flush
  end

  def stop
    @stdin.close unless @stdin.closed?
    return if @wait.join(FidelityApp::WAIT)

    Process.kill("KILL", @wait.pid)
    @wait.join
  rescue Errno::ESRCH
    nil
  end
end
