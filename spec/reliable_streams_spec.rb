# frozen_string_literal: true

require "spec_helper"

# Reliable streams in embedded mode: the official @anycable/core client on
# actioncable-v1-ext-json against the embedded server and the dummy app's
# ChatChannel (broadcasts made in this process, memory broker).
RSpec.describe "reliable streams (extended protocol) in embedded mode" do
  before(:all) do
    e2e = File.join(ROOT, "tests", "e2e")
    unless File.directory?(File.join(e2e, "node_modules", "@anycable", "core"))
      system("npm", "ci", "--silent", "--no-audit", "--no-fund", chdir: e2e, exception: true)
    end
    @server = Ferrocable::Server.new(port: 0, worker_pool_size: 2).start
  end

  after(:all) { @server.stop }

  it "delivers what was broadcast while the client was away, in order, once, with positions" do
    script = File.join(ROOT, "spec", "support", "reliable_client.mjs")
    out = IO.popen(["node", script, "ws://127.0.0.1:#{@server.port}/cable", "reliable"],
                   err: %i[child out], &:read)
    expect($?.exitstatus).to eq(0), out
    result = JSON.parse(out.lines.last)
    expect(result["got"]).to eq((1..5).map { |n| { "text" => "m#{n}", "offset" => n, "stream" => "chat_reliable" } })
    expect(result["confirmed"]).to be(true)
  end
end
