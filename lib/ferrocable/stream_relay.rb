# frozen_string_literal: true

module Ferrocable
  # Broadcasts through the app's own Action Cable subscription adapter
  # (`config/cable.yml`: redis, postgresql, async, or any other) reach this
  # process's Ferrocable servers: while a stream has subscribers here, it is
  # subscribed on the adapter, as Action Cable's own server would, and every
  # message on it is handed to the hub once. So an app keeps
  # `adapter: redis`, and `ActionCable.server.broadcast` from any process
  # (a job, `rails runner`, another Puma worker) reaches its clients.
  class StreamRelay
    def initialize(adapter, logger: Ferrocable.logger)
      @adapter = adapter
      @logger = logger
      @lock = Mutex.new
      @streams = {} # name => [relay proc, count]
    end

    attr_reader :adapter

    def watch(stream)
      relay = @lock.synchronize do
        entry = (@streams[stream] ||= [relay_for(stream), 0])
        entry[1] += 1
        entry[0] if entry[1] == 1
      end
      @adapter.subscribe(stream, relay) if relay
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
      @adapter.unsubscribe(stream, relay) if relay
    end

    # Streams subscribed on the adapter now.
    def streams
      @lock.synchronize { @streams.keys }
    end

    # Action Cable's per-connection channel (remote disconnects).
    def subscribe_internal(channel, handler)
      @adapter.subscribe(channel, handler)
    end

    def unsubscribe_internal(channel, handler)
      @adapter.unsubscribe(channel, handler)
    end

    private

    def relay_for(stream)
      lambda do |message|
        Ferrocable.servers.each { |server| server.broadcast(stream, message) }
      rescue StandardError => e
        @logger.error("Ferrocable: relaying a broadcast on #{stream.inspect} failed: #{e.class}: #{e.message}")
      end
    end
  end
end
