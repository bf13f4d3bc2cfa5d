# frozen_string_literal: true

require "spec_helper"

# The official @rails/actioncable client (npm) against the embedded server
# running the dummy app's channels: what it sees must be what it sees from
# Action Cable.
RSpec.describe "@rails/actioncable against the embedded server" do
  before(:all) do
    e2e = File.join(ROOT, "tests", "e2e")
    unless File.directory?(File.join(e2e, "node_modules", "@rails", "actioncable"))
      system("npm", "ci", "--silent", "--no-audit", "--no-fund", chdir: e2e, exception: true)
    end
    @server = Ferrocable::Server.new(port: 0, worker_pool_size: 2).start
  end

  after(:all) { @server.stop }

  it "subscribes (transmissions before connected), is rejected where the channel rejects, performs, receives" do
    script = File.join(ROOT, "spec", "support", "actioncable_client.mjs")
    out = IO.popen(["node", script, "ws://127.0.0.1:#{@server.port}/cable?guest=jsclient", "js"],
                   err: %i[child out], &:read)
    expect($?.exitstatus).to eq(0), out
    events = out.lines.map { |l| JSON.parse(l) }
    chat = events.reject { |e| e["event"] == "rejected" }
    expect(chat).to eq([
                         { "event" => "received", "data" => { "hello" => "jsclient" } },
                         { "event" => "connected" },
                         { "event" => "received", "data" => { "text" => "from @rails/actioncable", "from" => "jsclient" } }
                       ])
    expect(events).to include({ "event" => "rejected", "data" => "secret" })
  end
end
