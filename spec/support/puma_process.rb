# frozen_string_literal: true

require "tmpdir"
require "process_child"

# Puma serving the dummy app with `plugin :ferrocable`, in a child process:
# single mode (`workers: 0`) or cluster mode, HTTP on `http_port` and
# Ferrocable on `port`. `run` returns once every Ferrocable server listens
# and kills Puma (by PID) afterwards, whatever happened.
class PumaProcess
  attr_reader :child, :port

  def self.run(port:, http_port:, workers: 0, config: "", env: {})
    puma = new(port: port, http_port: http_port, workers: workers, config: config, env: env)
    # A cold start loads Rails in every worker: a generous bound.
    puma.child.wait_for(/Ferrocable: server listening on port #{port}/, timeout: 120, count: [workers, 1].max)
    yield puma
  ensure
    puma&.kill
  end

  def initialize(port:, http_port:, workers:, config:, env:)
    @port = port
    @config_file = File.join(Dir.tmpdir, "ferrocable-puma-#{Process.pid}-#{port}.rb")
    cluster = workers.positive? ? "workers #{workers}\npreload_app!\n" : ""
    File.write(@config_file, <<~RUBY)
      #{cluster}threads 1, 2
      bind "tcp://127.0.0.1:#{http_port}"
      plugin :ferrocable
      #{config}
    RUBY
    env = { "ANYCABLE_PORT" => port.to_s, "RUBYLIB" => File.join(ROOT, "lib"), "DUMMY_LOG" => "/dev/stdout" }.merge(env)
    @child = ProcessChild.new(["puma", "-C", @config_file, File.join(DUMMY_DIR, "config.ru")], env: env)
  end

  def pid
    @child.pid
  end

  def output
    @child.output
  end

  def kill
    @child&.kill
    File.delete(@config_file) if File.exist?(@config_file)
  end
end
