# frozen_string_literal: true

module Ferrocable
  # Ruby threads that run application calls: each asks the extension for the
  # next call (waiting with the GVL released, interruptible), runs it through
  # the handler and hands the reply back. A worker takes one call at a time
  # (a queued call is taken without releasing the GVL), so a slow call never
  # holds up others while another worker is free. A worker that dies
  # (Thread#kill, a bug) answers the call it held with an error and is
  # replaced while the pool runs.
  class WorkerPool
    POLL_SECONDS = 0.5

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
        @supervisor = Thread.new { supervise }
        @supervisor.name = "ferrocable-supervisor"
      end
      self
    end

    def threads
      @lock.synchronize { @threads.dup }
    end

    # Workers stop once the native server has stopped (next_call returns nil).
    def stop(timeout: 10)
      supervisor = @lock.synchronize do
        @running = false
        @supervisor
      end
      supervisor&.wakeup rescue ThreadError # rubocop:disable Style/RescueModifier
      supervisor&.join(1)
      deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + timeout
      threads.each do |t|
        t.join([deadline - Process.clock_gettime(Process::CLOCK_MONOTONIC), 0].max) || t.kill
      end
      @lock.synchronize { @threads.clear }
    end

    private

    def spawn_worker
      thread = Thread.new { run }
      thread.name = "ferrocable-worker"
      thread.report_on_exception = false
      thread
    end

    def run
      loop do
        calls = @native.next_calls(POLL_SECONDS, 1)
        if calls.empty?
          break unless @native.running?

          next
        end
        calls.each { |call| serve(call) }
      end
    end

    # Answers `call` whatever happens to this thread meanwhile (Thread#kill
    # runs this ensure too): nobody waits for a reply forever.
    def serve(call)
      reply = nil
      reply = @handler.call(call)
    ensure
      reply ||= Handler.error_reply("the worker thread serving this call ended")
      answer(call, reply)
    end

    # A reply the extension cannot take (a value of the wrong type) still
    # answers the call, as an error.
    def answer(call, reply)
      @native.reply(call["id"], reply)
    rescue StandardError => e
      @logger.error("Ferrocable: the reply to a #{call['kind']} call could not be used: #{e.class}: #{e.message}")
      @native.reply(call["id"], Handler.error_reply("the application's reply could not be used"))
    end

    # Replaces workers that died (Thread#kill, a bug in this file) while the
    # pool runs; the call such a worker held was answered with an error.
    def supervise
      loop do
        sleep POLL_SECONDS
        @lock.synchronize do
          return unless @running && @native.running?

          dead = @threads.reject(&:alive?)
          next if dead.empty?

          @logger.warn("Ferrocable: #{dead.size} worker thread(s) ended unexpectedly; starting replacements")
          @threads -= dead
          dead.size.times { @threads << spawn_worker }
        end
      end
    end
  end
end
