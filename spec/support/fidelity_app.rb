# frozen_string_literal: true

require "fileutils"
require "json"
require "net/http"
require "securerandom"
require "socket"
require "ports"
require "redis_process"

# The fidelity app (spec/fidelity) served by one target, in subprocesses the
# spec owns: a redis-server and Puma on reserved ports (see Ports), in
# RAILS_ENV=production with a fresh secret and database per run. Each target
# boots once for its group of examples and is stopped by PID.
#
#   action_cable        Puma, Action Cable mounted at /cable, without the gem
#   ferrocable_redis    Puma + `plugin :ferrocable`, config/cable.yml untouched (adapter: redis)
#   ferrocable_adapter  Puma + `plugin :ferrocable`, cable.yml adapter: ferrocable
class FidelityApp
  ROOT_DIR = File.expand_path("../..", __dir__)
  APP_DIR = File.join(ROOT_DIR, "spec", "fidelity")
  # How long to wait for something that should happen: generous, since the
  # machine may be busy; only failing examples ever wait this long.
  WAIT = Float(ENV.fetch("FIDELITY_WAIT", 30))
  BOOT_WAIT = 180

  TARGETS = {
    action_cable: { cable: nil, adapter: "redis" },
    ferrocable_redis: { cable: "ferrocable", adapter: "redis" },
    ferrocable_adapter: { cable: "ferrocable", adapter: "ferrocable" }
  }.freeze

  ORIGIN = "https://fidelity.example"

  attr_reader :name, :http_port, :cable_port, :dir, :exit_status

  def initialize(name)
    @name = name
    @target = TARGETS.fetch(name)
  end

  def ferrocable?
    @target[:cable] == "ferrocable"
  end

  def adapter
    @target[:adapter]
  end

  def start
    @dir = File.join(ROOT_DIR, "tmp", "fidelity", name.to_s)
    FileUtils.rm_rf(@dir)
    FileUtils.mkdir_p(@dir)
    @redis = RedisProcess.new
    @http_port = Ports.reserve
    @cable_port = ferrocable? ? Ports.reserve : @http_port
    @pid = Process.spawn(env, "puma", "-C", "config/puma.rb", chdir: APP_DIR, unsetenv_others: true,
                                                                in: File::NULL, out: puma_log, err: %i[child out])
    wait_ready
    self
  rescue StandardError
    stop
    raise
  end

  def cable_url(query = "")
    "ws://127.0.0.1:#{@cable_port}/cable#{query}"
  end

  def http_url(path)
    "http://127.0.0.1:#{@http_port}#{path}"
  end

  def log_path
    File.join(@dir, "production.log")
  end

  def puma_log
    File.join(@dir, "puma.log")
  end

  def running?
    return false unless @pid

    result = Process.wait2(@pid, Process::WNOHANG)
    return true unless result

    reap(result[1])
    false
  end

  # SIGTERM to Puma and a bounded wait for it to exit; KILL (and the status
  # says so) if it does not. Returns Puma's exit status.
  def terminate(signal = "TERM")
    return @exit_status unless @pid

    Process.kill(signal, @pid)
    status = wait_exit(BOOT_WAIT)
    unless status
      @killed = true
      Process.kill("KILL", @pid)
      status = Process.wait2(@pid)[1]
    end
    reap(status)
  rescue Errno::ESRCH, Errno::ECHILD
    reap(nil)
  end

  def killed?
    @killed ? true : false
  end

  def stop
    terminate if @pid
    @redis&.stop
    @redis = nil
  end

  # Runs Ruby code in another process of the app (`bin/rails runner`), as a
  # job or a console would; returns [status, output].
  def runner(code)
    out_path = File.join(@dir, "runner-#{SecureRandom.hex(4)}.log")
    pid = Process.spawn(env, File.join(APP_DIR, "bin", "rails"), "runner", code,
                        chdir: APP_DIR, unsetenv_others: true, in: File::NULL, out: out_path, err: %i[child out])
    deadline = now + BOOT_WAIT
    status = nil
    until (status = Process.wait2(pid, Process::WNOHANG)&.last)
      if now > deadline
        Process.kill("KILL", pid)
        Process.wait(pid)
        raise "rails runner did not finish within #{BOOT_WAIT}s:\n#{File.read(out_path)}"
      end
      sleep 0.05
    end
    [status, File.read(out_path)]
  end

  # Where the logs are now: the Rails log and Puma's output (where
  # Ferrocable's Rust side logs), as byte offsets.
  def log_mark
    [log_path, puma_log].map { |path| File.exist?(path) ? File.size(path) : 0 }
  end

  # What the app, Puma and the server logged since `mark`.
  def log_since(mark)
    [log_path, puma_log].zip(mark).map { |path, offset| File.exist?(path) ? File.binread(path, nil, offset).to_s : "" }
                        .join
  end

  private

  def env
    @env ||= {
      "PATH" => ENV.fetch("PATH"),
      "HOME" => ENV.fetch("HOME", "/tmp"),
      "LANG" => ENV.fetch("LANG", "C.UTF-8"),
      "RAILS_ENV" => "production",
      "SECRET_KEY_BASE" => SecureRandom.hex(64),
      "FIDELITY_DB" => File.join(@dir, "production.sqlite3"),
      "FIDELITY_LOG" => log_path,
      "RAILS_LOG_LEVEL" => "debug",
      "REDIS_URL" => "#{@redis.url}/0",
      "PORT" => @http_port.to_s,
      "CABLE_ADAPTER" => adapter,
      "CABLE" => @target[:cable],
      "CABLE_PORT" => (@cable_port.to_s if ferrocable?),
      "FERROCABLE_BROADCAST_KEY" => (SecureRandom.hex(16) if ferrocable?)
    }.compact
  end

  def now
    Process.clock_gettime(Process::CLOCK_MONOTONIC)
  end

  # Polls until Puma answers /up (as the right kind of server) and, for
  # Ferrocable, until its WebSocket port answers /health.
  def wait_ready
    deadline = now + BOOT_WAIT
    until ready?
      raise "#{name}: Puma exited while booting:\n#{tail(puma_log)}\n#{tail(log_path)}" unless running?
      raise "#{name}: not ready within #{BOOT_WAIT}s:\n#{tail(puma_log)}\n#{tail(log_path)}" if now > deadline

      sleep 0.1
    end
  end

  def ready?
    up = get(@http_port, "/up")
    return false unless up&.code == "200"

    info = JSON.parse(up.body)
    if info["ferrocable"] != ferrocable? || info["adapter"] != adapter
      raise "#{name}: the app runs #{info.inspect}, expected ferrocable=#{ferrocable?} adapter=#{adapter}"
    end
    !ferrocable? || get(@cable_port, "/health")&.code == "200"
  end

  def get(port, path)
    Net::HTTP.start("127.0.0.1", port, open_timeout: 5, read_timeout: 30) { |http| http.get(path) }
  rescue SystemCallError, IOError, Net::OpenTimeout, Net::ReadTimeout
    nil
  end

  def wait_exit(seconds)
    deadline = now + seconds
    loop do
      result = Process.wait2(@pid, Process::WNOHANG)
      return result[1] if result
      return nil if now > deadline

      sleep 0.05
    end
  end

  def reap(status)
    @exit_status = status if status
    @pid = nil
    @exit_status
  end

  def tail(path, lines = 40)
    File.exist?(path) ? File.readlines(path).last(lines).join : "(no #{path})"
  end
end
