# frozen_string_literal: true

module Ferrocable
  # A Ferrocable server in this process: the Rust server (WebSocket, or the
  # gRPC RPC server with `mode: :rpc`) and the Ruby worker threads that run
  # the application's channel code for it.
  class Server
    attr_reader :config, :native, :handler, :workers
    # The relay from the app's cable.yml adapter (embedded, unless
    # `adapter: ferrocable`).
    attr_reader :relay

    # `options` are the binary's option names (port:, host:, rpc_host:,
    # broadcast_adapter:, ...) plus worker_pool_size:; they override
    # Ferrocable.config.
    def initialize(options = {}, mode: :websocket, config: Ferrocable.config, **more)
      @mode = mode.to_sym
      @config = config.dup.merge!(options.merge(more))
      @native = Native::Server.new(@config.to_args, @mode.to_s)
      @handler = @mode == :rpc ? self.class.rpc_handler : embedded_handler
      @workers = WorkerPool.new(@native, @handler, size: @config.worker_pool_size)
    end

    # Starts serving; returns self. `reuse_port` lets several processes
    # (Puma workers) listen on the same port.
    def start(reuse_port: false)
      @port = @native.start(reuse_port)
      @workers.start
      Ferrocable.register_server(self) if @mode == :websocket
      Ferrocable.logger.info("Ferrocable: #{@mode == :rpc ? 'RPC server' : 'server'} listening on port #{@port} " \
                             "(#{@workers.size} workers)")
      self
    end

    def port
      @native.port
    end

    def running?
      @native.running?
    end

    # Graceful stop: clients get server_restart, Disconnect callbacks run.
    # Safe in a signal handler (Puma stops its plugins from its SIGTERM
    # trap): the work runs on a thread of its own, where Mutex and Logger are
    # allowed, while the caller waits for it. Interrupted (Thread#kill,
    # Ctrl-C), the caller returns and the stop still completes.
    def stop
      stopping = Thread.new { stop_now }
      stopping.name = "ferrocable-stop"
      stopping.report_on_exception = false
      stopping.value
    end

    # Blocks until INT or TERM, then stops gracefully.
    def run
      start unless running?
      queue = Queue.new
      previous = %w[INT TERM].to_h { |sig| [sig, trap(sig) { queue << sig }] }
      signal = queue.pop
      Ferrocable.logger.info("Ferrocable: #{signal} received, shutting down")
      stop
    ensure
      previous&.each { |sig, handler| trap(sig, handler || "DEFAULT") }
    end

    # A broadcast made in this process: delivered here and passed on to the
    # other nodes (pubsub).
    def broadcast(stream, data)
      @native.broadcast(stream.to_s, data.to_s)
    end

    # A broadcast every process receives by itself (the app's cable.yml
    # adapter): delivered here only.
    def deliver(stream, data)
      @native.deliver(stream.to_s, data.to_s)
    end

    def publish(payload)
      @native.publish(payload)
    end

    def client_count
      @native.client_count
    end

    # The app's Action Cable adapter (`config/cable.yml`), built now so a
    # configuration that cannot work fails at boot, not at the first
    # broadcast.
    def self.cable_adapter
      ActionCable.server.pubsub
    rescue StandardError, LoadError => e
      raise ConfigError, "Action Cable's subscription adapter (config/cable.yml: " \
                         "#{ActionCable.server.config.cable.inspect}) cannot be built: #{e.class}: #{e.message}"
    end

    def self.ferrocable_adapter?(adapter)
      adapter.is_a?(ActionCable::SubscriptionAdapter::Ferrocable)
    end

    # The handler of RPC calls (the gRPC server's, or HTTPRPC's). Behind
    # the RPC server, clients are served by the ferrocable binary (or
    # anycable-go), which reads broadcasts from `__anycable__` (Redis) or
    # HTTP; Rails' own adapters publish elsewhere, so every broadcast would
    # be lost.
    def self.rpc_handler
      adapter = cable_adapter
      unless ferrocable_adapter?(adapter)
        raise ConfigError, "config/cable.yml uses #{adapter.class.name.demodulize}: behind the RPC server, " \
                           "broadcasts must reach the ferrocable binary. Set `adapter: ferrocable` in " \
                           "config/cable.yml (and broadcast_adapter: redis or http in config/ferrocable.yml)."
      end
      RpcHandler.new
    end

    private

    def stop_now
      finished = @native.stop
      @workers.stop
      Ferrocable.unregister_server(self)
      finished
    end

    def embedded_handler
      if @config[:disconnect_mode].to_s == "never"
        raise ConfigError, "disconnect_mode is never: in embedded mode every connection object, its channels " \
                           "and timers would stay in the process for ever. Unset it (ANYCABLE_DISCONNECT_MODE) " \
                           "or set it to auto or always."
      end
      adapter = self.class.cable_adapter
      @relay = self.class.ferrocable_adapter?(adapter) ? nil : StreamRelay.new(adapter)
      EmbeddedHandler.new(cable_server: CableServer.new(relay: @relay))
    end
  end
end
