# frozen_string_literal: true

# A child process whose output is collected; `input` is its stdin (a pipe).
class ProcessChild
  attr_reader :pid, :output, :input

  def initialize(command, env: {})
    out_r, out_w = IO.pipe
    in_r, @input = IO.pipe
    @pid = spawn({ "RAILS_ENV" => "test" }.merge(env), *command, in: in_r, out: out_w, err: out_w, chdir: ROOT)
    [out_w, in_r].each(&:close)
    @output = +""
    @lock = Mutex.new
    @pump = Thread.new { out_r.each_line { |l| @lock.synchronize { @output << l } } }
  end

  # Waits until the output matches `pattern`; returns the MatchData.
  def wait_for(pattern, timeout: 30)
    deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + timeout
    loop do
      match = @lock.synchronize { pattern.match(@output) }
      return match if match
      raise "no output matching #{pattern.inspect} within #{timeout}s:\n#{@output}" if
        Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline

      sleep 0.05
    end
  end

  def wait_exit(timeout: 15)
    deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + timeout
    loop do
      result = Process.wait2(@pid, Process::WNOHANG)
      if result
        @pid = nil
        @pump.join(2)
        return result[1]
      end
      raise "process did not exit within #{timeout}s:\n#{@output}" if
        Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline

      sleep 0.05
    end
  end

  def kill
    return unless @pid

    Process.kill("KILL", @pid)
    Process.wait(@pid)
  rescue Errno::ESRCH, Errno::ECHILD
    nil
  end
end
