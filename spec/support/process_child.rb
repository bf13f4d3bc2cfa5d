# frozen_string_literal: true

# A child process whose output is collected; `input` is its stdin (a pipe).
# Every wait is bounded, and a child that exits early fails the wait at once
# with its output instead of running out the clock.
class ProcessChild
  ROOT_DIR = File.expand_path("../..", __dir__)

  attr_reader :pid, :output, :input

  # The command that runs Ruby `code` (or, with `file:`, a script) with the
  # gem's lib/ and spec/support on the load path.
  def self.ruby(code = nil, file: nil)
    ["ruby", "-I", File.join(ROOT_DIR, "lib"), "-I", File.join(ROOT_DIR, "spec", "support"),
     *(file ? [file] : ["-e", code])]
  end

  # Runs `command` for the block and kills it (by PID) afterwards, whatever
  # happened.
  def self.run(command, env: {})
    child = new(command, env: env)
    yield child
  ensure
    child&.kill
  end

  def initialize(command, env: {})
    out_r, out_w = IO.pipe
    in_r, @input = IO.pipe
    @pid = spawn({ "RAILS_ENV" => "test" }.merge(env), *command, in: in_r, out: out_w, err: out_w, chdir: ROOT_DIR)
    [out_w, in_r].each(&:close)
    @output = +""
    @status = nil
    @lock = Mutex.new
    @pump = Thread.new { out_r.each_line { |l| @lock.synchronize { @output << l } } }
  end

  # Waits until the output matches `pattern` (`count` times); returns the
  # first MatchData.
  def wait_for(pattern, timeout: 30, count: 1)
    deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + timeout
    loop do
      # Read the status first: once it is known, the output is complete.
      status = exit_status
      match = @lock.synchronize { pattern.match(@output) if @output.scan(pattern).size >= count }
      return match if match
      raise "exited (#{status.inspect}) with no output matching #{pattern.inspect}:\n#{@output}" if status
      raise "no output matching #{pattern.inspect} within #{timeout}s:\n#{@output}" if
        Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline

      sleep 0.05
    end
  end

  # The exit status once the process has ended, nil while it runs.
  def exit_status
    return @status if @status

    result = Process.wait2(@pid, Process::WNOHANG)
    return nil unless result

    @pump.join(5)
    @status = result[1]
  end

  def wait_exit(timeout: 15)
    deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + timeout
    loop do
      status = exit_status
      return status if status
      raise "process did not exit within #{timeout}s:\n#{@output}" if
        Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline

      sleep 0.05
    end
  end

  # Stops it as a deployment would (SIGTERM) and waits for it to exit.
  def terminate(timeout: 60)
    Process.kill("TERM", pid) unless @status
    wait_exit(timeout: timeout)
  end

  def kill
    return if @status

    Process.kill("KILL", @pid)
    @status = Process.wait2(@pid)[1]
  rescue Errno::ESRCH, Errno::ECHILD
    nil
  end
end
