# frozen_string_literal: true

module Ferrocable
  # The `server` that connection and channel objects see. Configuration,
  # logger and identifiers come from the application's Action Cable server;
  # the event loop runs posted blocks at once; pubsub records stream changes
  # into the current reply, for the Rust hub to apply.
  class CableServer
    # Records `stream_from` / `stop_stream_from` in the current reply.
    class Pubsub
      def subscribe(channel, _handler, on_success = nil)
        return on_success&.call if internal?(channel)

        reply = Reply.current
        if reply
          reply.stream(channel)
        else
          Ferrocable.logger.warn("Ferrocable: stream_from(#{channel.inspect}) outside of a call ignored")
        end
        on_success&.call
      end

      def unsubscribe(channel, _handler)
        return if internal?(channel)

        Reply.current&.stop_stream(channel)
      end

      def broadcast(channel, payload)
        Ferrocable.broadcast(channel, payload)
      end

      def shutdown; end

      private

      # Action Cable's per-connection channel for remote disconnects; remote
      # disconnects travel as Ferrocable publications instead.
      def internal?(channel)
        channel.start_with?("action_cable/")
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

    def initialize(action_cable = ActionCable.server, timers: true)
      @action_cable = action_cable
      @pubsub = Pubsub.new
      @event_loop = EventLoop.new(timers: timers)
      # Action Cable's worker runs its :work callbacks (the Rails executor,
      # Active Record log tags) around our calls; its own thread pool is not used.
      @worker_pool = ActionCable::Server::Worker.new(max_size: 1)
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
