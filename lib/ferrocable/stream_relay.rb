# frozen_string_literal: true

require "timeout"

module Ferrocable
  # Broadcasts through the app's own Action Cable subscription adapter
  # (`config/cable.yml`: redis, postgresql, async, or any other) reach this
  # process's Ferrocable servers: while a stream has subscribers here, it is
  # subscribed on the adapter, as Action Cable's own server would, and every
  # message on it is handed to the hub once. So an app keeps
  # `adapter: redis`, and `ActionCable.server.broadcast` from any process
  # (a job, `rails runner`, another Puma worker) reaches its clients.
  # Every process hears each message itself, so it is delivered to this
  # process's subscribers only (Server#deliver), never passed on to the
  # other nodes over `pubsub` (that would deliver it twice).
  #
  # Action Cable replaces its adapter when it restarts (before every code
  # reload in development): the relays of running servers then move every
  # subscription onto the new one (see ServerHook).
  class StreamRelay
    # How long a restart waits for the new adapter to confirm subscriptions.
    RESUBSCRIBE_WAIT = 10

    # After `ActionCable.server.restart` (Action Cable 5.0 through 8.x runs
    # it from the reloader), subscriptions move to the adapter it rebuilds.
    module ServerHook
      def restart
        super
        Ferrocable.servers.filter_map(&:relay).each { |relay| relay.reattach(pubsub) } if equal?(ActionCable.server)
      end
    end

    def initialize(adapter, logger: Ferrocable.logger)
      @adapter = adapter
      @logger = logger
      @lock = Mutex.new
      @streams = {} # name => [relay proc, count]
      @internal = [] # [channel, handler] of each connection's internal channel
    end


    attr_reader :adapter

    # Subscribes everything watched here on `adapter` (the old one is gone).
    def reattach(adapter)
      streams, internal = @lock.synchronize do
        @adapter = adapter
        [@streams.map { |name, (relay, _)| [name, relay] }, @internal.dup]
      end

      subscribed = Queue.new
      all = streams + internal
      all.each { |channel, handler| adapter.subscribe(channel, handler, -> { subscribed << channel }) }
      # Adapters subscribe asynchronously; the restart is over once the
      # streams are live again (bounded: a dead Redis must not hang a reload).
      deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + RESUBSCRIBE_WAIT
      all.size.times do
        left = deadline - Process.clock_gettime(Process::CLOCK_MONOTONIC)
        break if left <= 0 || Timeout.timeout(left) { subscribed.pop }.nil?
      rescue Timeout::Error
        break
      end
      @logger.info("Ferrocable: #{streams.size} streams moved to Action Cable's new #{adapter.class.name} adapter")
    end


    def watch(stream)
      relay = @lock.synchronize do
        entry = (@streams[stream] ||= [relay_for(stream), 0])
        entry[1] += 1
        entry[0] if entry[1] == 1
      end

      adapter.subscribe(stream, relay) if relay
    end


    def unwatch(stream)
      relay = @lock.synchronize do
        entry = @streams[stream]
        next unless entry

        entry[1] -= 1
        next if entry[1].positive?

        @streams.delete(stream)
        entry[0]
      end

      adapter.unsubscribe(stream, relay) if relay
    end


    # Streams subscribed on the adapter now.
    def streams
      @lock.synchronize { @streams.keys }
    end


    # Action Cable's per-connection channel (remote disconnects).
    def subscribe_internal(channel, handler)
      @lock.synchronize { @internal << [channel, handler] }
      adapter.subscribe(channel, handler)
    end


    def unsubscribe_internal(channel, handler)
      @lock.synchronize { @internal.delete_if { |c, h| c == channel && h.equal?(handler) } }
      adapter.unsubscribe(channel, handler)
    end


    private

    def relay_for(stream)
      lambda do |message|
        Ferrocable.servers.each { |server| server.deliver(stream, message) }
      rescue StandardError => e
        @logger.error("Ferrocable: relaying a broadcast on #{stream.inspect} failed: #{e.class}: #{e.message}")
      end

    end

  end
end

ActionCable::Server::Base.prepend(Ferrocable::StreamRelay::ServerHook)
