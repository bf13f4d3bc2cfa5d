# frozen_string_literal: true

module Ferrocable
  # The `server` that connection and channel objects see. Configuration,
  # logger and identifiers come from the application's Action Cable server;
  # the event loop runs posted blocks at once; pubsub records stream changes
  # into the current reply, for the Rust hub to apply; the worker pool runs
  # what Action Cable would queue on its own pool at once, on the thread
  # serving the call, so the call's reply collects what it transmits.
  class CableServer
    # Records `stream_from` / `stop_stream_from` in the current reply. When
    # the app's `config/cable.yml` names an Action Cable adapter (redis,
    # postgresql, async, ...), streams are also watched on it, so broadcasts
    # made through it (by this process or any other) reach the hub.
    class Pubsub
      def initialize(relay = nil)
        @relay = relay
      end

      def subscribe(channel, handler, on_success = nil)
        if internal?(channel)
          @relay&.subscribe_internal(channel, handler)
          return on_success&.call
        end

        reply = Reply.current
        if reply
          reply.stream(channel, handler, callback: ChannelStreams.callback?)
          @relay&.watch(channel)
        else
          Ferrocable.logger.warn("Ferrocable: stream_from(#{channel.inspect}) outside of a call ignored")
        end
        on_success&.call
      end

      def unsubscribe(channel, handler)
        return @relay&.unsubscribe_internal(channel, handler) if internal?(channel)

        reply = Reply.current
        return unless reply

        reply.stop_stream(channel, handler)
        @relay&.unwatch(channel)
      end

      def broadcast(channel, payload)
        Ferrocable.broadcast(channel, payload)
      end

      def shutdown; end

      private

      # Action Cable's per-connection channel for remote disconnects: with
      # the app's own adapter they arrive through it, as under Action Cable;
      # with `adapter: ferrocable` they travel as Ferrocable publications.
      def internal?(channel)
        channel.start_with?("action_cable/")
      end
    end

    # Action Cable's worker, whose `work` callbacks (the Rails executor,
    # Active Record log tags) wrap every call, running what Action Cable
    # would post to its thread pool at once on the calling thread.
    class WorkerPool < ActionCable::Server::Worker
      def initialize
        super(max_size: 1)
      end

      # Checked against Action Cable 6.1 and 8.x: stream handlers and
      # periodic timers reach the pool through `async_invoke`/`async_exec`.
      def async_invoke(receiver, method, *args, connection: receiver, &block)
        invoke(receiver, method, *args, connection: connection, &block)
      end
    end

    # Runs what Action Cable would post to its event loop right away.
    class EventLoop
      Timer = Struct.new(:task) do
        def shutdown
          task&.kill
        end
      end

      # `timers: false` for stateless calls: their channel objects are thrown
      # away after each call, so a timer would outlive its subscription.
      def initialize(timers: true)
        @timers = timers
        @warned = false
      end

      def post(task = nil, &block)
        (task || block).call
      end

      # Periodic timers (`periodically`) run on a Ruby thread of their own
      # and transmit to their session directly.
      def timer(interval, &block)
        unless @timers
          unless @warned
            @warned = true
            Ferrocable.logger.warn("Ferrocable: periodic timers do not run behind the RPC server (stateless calls)")
          end
          return Timer.new(nil)
        end
        Timer.new(Thread.new do
          loop do
            sleep interval
            block.call
          end
        end)
      end

      def attach(*) = nil
      def detach(*) = nil
      def stop = nil
    end

    attr_reader :pubsub, :event_loop, :worker_pool

    # `relay`: a StreamRelay over the app's Action Cable adapter, or nil
    # (`adapter: ferrocable`, or the stateless RPC server).
    def initialize(action_cable = ActionCable.server, timers: true, relay: nil)
      @action_cable = action_cable
      @pubsub = Pubsub.new(relay)
      @event_loop = EventLoop.new(timers: timers)
      @worker_pool = WorkerPool.new
    end

    def config
      @action_cable.config
    end

    def logger
      @action_cable.logger
    end

    def connection_identifiers
      config.connection_class.call.identifiers
    end

    def remote_connections
      @action_cable.remote_connections
    end

    def broadcast(...)
      @action_cable.broadcast(...)
    end

    def add_connection(*) = nil
    def remove_connection(*) = nil
  end
end
