# frozen_string_literal: true

require "spec_helper"

# The extension in real processes: signals, killed worker threads, process
# exit with the server running, fork. Every child is bounded by timeouts and
# killed (by PID) at the end; a hang fails the example, not the suite.
RSpec.describe "Ferrocable in a process" do
  def ruby_script(body)
    ProcessChild.ruby(<<~RUBY)
      $stdout.sync = true
      require #{File.join(DUMMY_DIR, 'config', 'environment').inspect}
      #{body}
    RUBY
  end

  %w[INT TERM].each do |signal|
    it "rake ferrocable:server stops gracefully on SIG#{signal}" do
      env = { "ANYCABLE_PORT" => "0", "DUMMY_LOG" => "/dev/stdout", "RUBYLIB" => File.join(ROOT, "lib") }
      ProcessChild.run(["rake", "-f", File.join(DUMMY_DIR, "Rakefile"), "ferrocable:server"], env: env) do |child|
        port = child.wait_for(/listening on port (\d+)/)[1].to_i
        client = guest(port, "sig")
        Process.kill(signal, child.pid)
        expect(client.receive).to eq("type" => "disconnect", "reason" => "server_restart", "reconnect" => true)
        expect(client.wait_closed).to eq(1001)
        expect(child.wait_exit.exitstatus).to eq(0), child.output
        expect(child.output).to include("#{signal} received")
      end
    end
  end

  it "rake ferrocable:rpc serves anycable.RPC for the binary and stops on SIGTERM" do
    env = { "ANYCABLE_RPC_HOST" => "127.0.0.1:0", "DUMMY_LOG" => "/dev/stdout",
            "RUBYLIB" => File.join(ROOT, "lib") }
    ProcessChild.run(["rake", "-f", File.join(DUMMY_DIR, "Rakefile"), "ferrocable:rpc"], env: env) do |rpc|
      rpc_port = rpc.wait_for(/RPC server listening on port (\d+)/)[1].to_i
      FerrocableBinary.run("--rpc_host=127.0.0.1:#{rpc_port}", "--broadcast_adapter=http",
                           "--http_broadcast_port=#{reserve_port}") do |_binary, ws_port|
        client = guest(ws_port, "viarake")
        client.perform(chat("proc"), action: "history")
        expect(client.receive["message"]).to eq("said" => [], "room" => "proc")
        client.close
      end
      Process.kill("TERM", rpc.pid)
      expect(rpc.wait_exit.exitstatus).to eq(0), rpc.output
    end
  end

  it "survives rake ferrocable:rpc being killed and restarted under load" do
    rpc_port = reserve_port # the same port for both runs of the RPC server
    broadcast_port = reserve_port # keyless HTTP broadcasts never share the WebSocket port
    env = { "ANYCABLE_RPC_HOST" => "127.0.0.1:#{rpc_port}", "RUBYLIB" => File.join(ROOT, "lib"),
            "ANYCABLE_HTTP_BROADCAST_URL" => "http://127.0.0.1:#{broadcast_port}/_broadcast" }
    rpc_task = ["rake", "-f", File.join(DUMMY_DIR, "Rakefile"), "ferrocable:rpc"]
    FerrocableBinary.run("--rpc_host=127.0.0.1:#{rpc_port}", "--broadcast_adapter=http",
                         "--http_broadcast_port=#{broadcast_port}", "--rpc_request_timeout=1000") do |_binary, ws_port|
      established = nil
      ProcessChild.run(rpc_task, env: env) do |rpc|
        rpc.wait_for(/serving anycable.RPC/)
        established = guest(ws_port, "steady")
        Process.kill("KILL", rpc.pid)
        rpc.wait_exit
      end
      # Down: new clients are told to come back, established ones keep their streams.
      started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
      newcomer = WsClient.new("ws://127.0.0.1:#{ws_port}/cable?guest=newcomer")
      expect(newcomer.receive).to eq("type" => "disconnect", "reason" => "server_restart", "reconnect" => true)
      expect(Process.clock_gettime(Process::CLOCK_MONOTONIC) - started).to be < 3
      http_post(broadcast_port, "/_broadcast", { stream: "chat_proc", data: { kept: true }.to_json }.to_json)
      expect(established.receive["message"]).to eq("kept" => true)
      # Back: service resumes without restarting the binary.
      ProcessChild.run(rpc_task, env: env) do |rpc|
        rpc.wait_for(/serving anycable.RPC/)
        returning = guest(ws_port, "returning")
        established.perform(chat("proc"), action: "speak", text: "after the restart")
        [established, returning].each do |c|
          expect(c.receive["message"]).to eq("text" => "after the restart", "from" => "steady")
        end
        [established, returning].each(&:close)
      end
    end
  end

  it "replaces worker threads killed with Thread#kill and keeps serving" do
    body = <<~RUBY
      server = Ferrocable::Server.new(port: 0, worker_pool_size: 2).start
      puts "READY \#{server.port}"
      $stdin.gets
      server.workers.threads.each(&:kill).each(&:join)
      puts "KILLED"
      sleep 0.1 until server.workers.threads.count(&:alive?) == 2
      puts "REPLACED"
      sleep
    RUBY
    ProcessChild.run(ruby_script(body)) do |child|
      port = child.wait_for(/READY (\d+)/)[1].to_i
      client = guest(port, "survivor")
      child.input.puts "kill"
      child.wait_for(/REPLACED/)
      client.perform(chat("proc"), action: "history")
      expect(client.receive["message"]).to eq("said" => [], "room" => "proc")
      client.close
    end
  end

  it "lets the process exit while the server runs with clients connected" do
    body = <<~RUBY
      server = Ferrocable::Server.new(port: 0, worker_pool_size: 2).start
      puts "READY \#{server.port}"
      $stdin.gets
      exit 0
    RUBY
    ProcessChild.run(ruby_script(body)) do |child|
      port = child.wait_for(/READY (\d+)/)[1].to_i
      client = guest(port, "leaver")
      child.input.puts "exit"
      expect(child.wait_exit.exitstatus).to eq(0)
      expect(client.wait_closed).not_to be_nil
    end
  end

  it "starts a fresh server in a forked child; the parent's keeps serving" do
    body = <<~RUBY
      parent = Ferrocable::Server.new(port: 0, worker_pool_size: 2).start
      puts "PARENT \#{parent.port}"
      child_pid = fork do
        puts "CHILD SEES PARENT RUNNING=\#{parent.running?}"
        server = Ferrocable::Server.new(port: 0, worker_pool_size: 2).start
        puts "CHILD \#{server.port}"
        $stdin.gets
        server.stop
        puts "CHILD STOPPED"
      end
      Process.wait(child_pid)
      puts "CHILD EXIT \#{$?.exitstatus}"
      sleep
    RUBY
    ProcessChild.run(ruby_script(body)) do |child|
      parent_port = child.wait_for(/PARENT (\d+)/)[1].to_i
      child_port = child.wait_for(/CHILD (\d+)/)[1].to_i
      expect(child.wait_for(/CHILD SEES PARENT RUNNING=(\w+)/)[1]).to eq("false")
      from_child = guest(child_port, "kid")
      from_parent = guest(parent_port, "mom")
      child.input.puts "stop"
      expect(child.wait_for(/CHILD EXIT (\d+)/)[1]).to eq("0")
      expect(from_child.receive).to include("type" => "disconnect", "reason" => "server_restart")
      from_parent.perform(chat("proc"), action: "history")
      expect(from_parent.receive["message"]).to include("room" => "proc")
      from_parent.close
    end
  end
end
