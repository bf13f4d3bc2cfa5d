# frozen_string_literal: true

require "spec_helper"
require "tmpdir"

# The gem as users get it: `gem build` + `gem install --local` (the install
# compiles the extension with cargo through extconf.rb) and a Gemfile `path:`
# entry with Bundler. Each serves a real client from a fresh Ruby process.
RSpec.describe "Installing the gem" do
  smoke = <<~'RUBY'
    require "ferrocable"
    $LOAD_PATH.unshift ENV.fetch("SPEC_SUPPORT")
    require "ws_client"
    module ApplicationCable
      class Connection < ActionCable::Connection::Base
        identified_by :name
        def connect
          self.name = request.params[:name] || reject_unauthorized_connection
        end
      end
    end
    class EchoChannel < ActionCable::Channel::Base
      def subscribed = stream_from("echo")
      def say(data) = ActionCable.server.broadcast("echo", { said: data["text"], by: name })
    end
    ActionCable.server.config.connection_class = -> { ApplicationCable::Connection }
    ActionCable.server.config.cable = { "adapter" => "ferrocable" }
    # No browser here, so no Origin header: Action Cable's origin check
    # would refuse the handshake (404), as Ferrocable does.
    ActionCable.server.config.disable_request_forgery_protection = true
    ActionCable.server.config.logger = Logger.new(File::NULL)
    Ferrocable.logger = Logger.new(File::NULL)
    server = Ferrocable::Server.new(host: "127.0.0.1", port: 0, log_level: "warn").start
    client = WsClient.new("ws://127.0.0.1:#{server.port}/cable?name=installed")
    client.welcome
    id = { channel: "EchoChannel" }.to_json
    client.subscribe(id)
    client.receive
    client.perform(id, action: "say", text: "hi")
    puts "ECHO #{client.receive['message'].to_json}"
    puts "EXT #{$LOADED_FEATURES.grep(/ferrocable_ext/).first}"
    client.close
    server.stop
  RUBY

  def run_smoke(env, script, *command)
    env = env.merge("SPEC_SUPPORT" => File.join(ROOT, "spec", "support"))
    IO.popen(env, [*command, "ruby", "-e", script], err: %i[child out], &:read)
  end

  it "works from gem build + gem install --local", timeout: 900 do
    Dir.mktmpdir("ferrocable-gem") do |dir|
      gem_file = File.join(dir, "ferrocable.gem")
      system("gem", "build", "ferrocable.gemspec", "--output", gem_file, chdir: ROOT, out: File::NULL,
                                                                                      err: File::NULL, exception: true)
      home = File.join(dir, "home")
      # A build cache shared between runs keeps this from compiling every crate each time.
      env = { "GEM_HOME" => home, "GEM_PATH" => [home, *Gem.path].join(":"),
              "CARGO_TARGET_DIR" => File.join(ROOT, "target", "gem-install") }
      output = IO.popen(env, ["gem", "install", "--local", "--no-document", gem_file], err: %i[child out], &:read)
      expect($?.success?).to be(true), output
      out = run_smoke(env, smoke)
      expect(out).to include('ECHO {"said":"hi","by":"installed"}'), out
      expect(out[/EXT (.*)/, 1]).to start_with(home)
    end
  end

  # A process that has the library loaded while `rake compile` installs a
  # new one must keep running: the file it maps is replaced, never rewritten
  # (rewriting it in place killed such a process with SIGBUS). The child
  # calls into the extension without pause, so it runs through the copy.
  it "rake compile replaces the library under a running process without crashing it", timeout: 900 do
    busy = <<~'RUBY'
      $stdout.sync = true
      require "ferrocable/errors"
      require "ferrocable/ferrocable_ext"
      native = Ferrocable::Native::Server.new(["--host=127.0.0.1", "--port=0", "--log_level=error"], "websocket")
      native.start(false)
      calls = 0
      done = false
      busy = Thread.new do
        until done
          native.next_calls(0.001, 4)
          native.metrics
          calls += 1
        end
      end
      Thread.pass while calls.zero?
      puts "BUSY"
      $stdin.gets
      done = true
      busy.join
      puts "STOPPED #{native.stop}"
    RUBY
    ProcessChild.run(ProcessChild.ruby(busy)) do |child|
      child.wait_for(/^BUSY$/)
      output = IO.popen(["rake", "-f", File.join(ROOT, "Rakefile"), "compile"], chdir: ROOT, err: %i[child out],
                        &:read)
      expect($?.success?).to be(true), output
      expect(child.exit_status).to be_nil, "the child died while the library was replaced:\n#{child.output}"
      child.input.puts "stop"
      status = child.wait_exit(timeout: 60)
      expect(status.success?).to be(true), "#{status.inspect}:\n#{child.output}"
      expect(child.output).to include("STOPPED true")
    end
    expect(Dir[File.join(ROOT, "lib", "ferrocable", "*.tmp")]).to be_empty
  end

  it "works from a Gemfile path: entry (after rake compile in the checkout)", timeout: 120 do
    Dir.mktmpdir("ferrocable-bundle") do |dir|
      File.write(File.join(dir, "Gemfile"), %(source "https://rubygems.org"\ngem "ferrocable", path: #{ROOT.inspect}\n))
      env = { "BUNDLE_GEMFILE" => File.join(dir, "Gemfile"), "BUNDLE_APP_CONFIG" => File.join(dir, ".bundle") }
      output = IO.popen(env, ["bundle", "install", "--local"], err: %i[child out], chdir: dir, &:read)
      expect($?.success?).to be(true), output
      out = run_smoke(env, smoke, "bundle", "exec")
      expect(out).to include('ECHO {"said":"hi","by":"installed"}'), out
      expect(out[/EXT (.*)/, 1]).to start_with(File.join(ROOT, "lib"))
    end
  end
end
