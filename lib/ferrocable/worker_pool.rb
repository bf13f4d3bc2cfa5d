# frozen_string_literal: true

module Ferrocable
  # Ruby threads that run application calls: each asks the extension for the
  # next call (waiting with the GVL released, interruptible), runs it through
  # the handler and hands the reply back. A worker that dies (Thread#kill, a
  # bug) is replaced while the pool runs; the call it held times out in Rust.
  class WorkerPool
    POLL_SECONDS = 0.5

    class << self
      # Set at process exit: dying workers are then not replaced.
      attr_accessor :exiting
    end
    at_exit { WorkerPool.exiting = true }

    attr_reader :size

    def initialize(native, handler, size:, logger: Ferrocable.logger)
      @native = native
      @handler = handler
      @size = size
      @logger = logger
      @threads = []
      @lock = Mutex.new
      @running = false
    end

    def start
      @lock.synchronize do
        @running = true
        @size.times { @threads << spawn_worker }
      end
      self
    end

    def threads
      @lock.synchronize { @threads.dup }
    end

    # Workers stop once the native server has stopped (next_call returns nil).
    def stop(timeout: 10)
      @lock.synchronize { @running = false }
      deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + timeout
      threads.each do |t|
        t.join([deadline - Process.clock_gettime(Process::CLOCK_MONOTONIC), 0].max) || t.kill
      end
      @lock.synchronize { @threads.clear }
    end

    private

    def spawn_worker
      Thread.new do
        Thread.current.name = "ferrocable-worker"
        Thread.current.report_on_exception = false
        run
      ensure
        replace(Thread.current)
      end
    end

    def run
      loop do
        call = @native.next_call(POLL_SECONDS)
        if call.nil?
          break unless @native.running?

          next
        end
        reply = @handler.call(call)
        @native.reply(call["id"], call["kind"], reply)
      end
    end

    def replace(thread)
      @lock.synchronize do
        @threads.delete(thread)
        next unless @running && !WorkerPool.exiting && @native.running?

        @logger.warn("Ferrocable: a worker thread ended unexpectedly; starting another")
        @threads << spawn_worker
      end
    end
  end
end
