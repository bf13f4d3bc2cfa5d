# frozen_string_literal: true

require "json"
require "net/http"
require "uri"

module Ferrocable
  # Sends publications (broadcasts, remote disconnects) the way the
  # configured `broadcast_adapter` says: through Redis when it includes
  # `redis` (PUBLISH on `redis_channel`) or `redisx` (XADD to
  # `redisx_stream`, the entry's `payload` field, as AnyCable's `redisx`
  # adapter writes it); else straight into the hub of every server running
  # in this process; else by HTTP to `http_broadcast_url`, with the key the
  # endpoint requires. Channel, stream, URL and key are the core's
  # resolution (Config#resolved), not derived here. (NATS is not published
  # to from Ruby: Debian has no NATS client gem.)
  class Broadcaster
    def initialize(config)
      @config = config
      @lock = Mutex.new
    end

    def broadcast(stream, data)
      reply = Reply.current
      if reply&.defer_broadcasts && !through_redis?
        reply.broadcasts << [stream.to_s, data.to_s]
        return
      end
      publish({ stream: stream.to_s, data: data.to_s }.to_json) do |server|
        server.broadcast(stream, data)
      end
    end

    # Closes every session whose connection identifiers equal `identifiers`.
    def disconnect(identifiers, reconnect: true)
      publish({ command: "disconnect", payload: { identifier: identifiers, reconnect: reconnect } }.to_json)
    end

    private

    def publish(payload)
      adapters = @config.broadcast_adapters
      servers = Ferrocable.servers
      if adapters.include?("redis")
        redis.publish(@config[:redis_channel], payload)
      elsif adapters.include?("redisx")
        redis.xadd(@config[:redisx_stream], { payload: payload })
      elsif servers.any?
        servers.each { |server| block_given? ? yield(server) : server.publish(payload) }
      elsif (url = http_url)
        post(url, payload)
      else
        raise Error, "nowhere to broadcast: no Ferrocable server runs in this process, " \
                     "broadcast_adapter is #{adapters.join(',').inspect} and no HTTP endpoint is configured"
      end
    end

    # Every node, this process's included, hears it from Redis: nothing to
    # defer.
    def through_redis?
      @config.broadcast_adapters.intersect?(%w[redis redisx])
    end

    def redis
      @lock.synchronize do
        @redis ||= begin
          require "redis"
          Redis.new(url: @config[:redis_url], **redis_tls)
        end
      end
    end

    # anycable-go's `redis_tls_*` options for a rediss:// URL, as the core
    # reads them: the server's certificate checked only with
    # `redis_tls_verify`, a client certificate for mutual TLS.
    def redis_tls
      return {} unless @config[:redis_url].to_s.start_with?("rediss://")

      require "openssl"
      verify = @config[:redis_tls_verify]
      unless verify
        # As the core says at start for its own Redis connection: never silently.
        Ferrocable.logger.warn("Ferrocable: redis_url is rediss:// but redis_tls_verify is off (anycable-go's " \
                               "default): the Redis server's certificate is not checked; set redis_tls_verify: true")
      end
      params = { verify_mode: verify ? OpenSSL::SSL::VERIFY_PEER : OpenSSL::SSL::VERIFY_NONE }
      params[:ca_file] = @config[:redis_tls_ca_cert_path] if @config[:redis_tls_ca_cert_path]
      cert = @config[:redis_tls_client_cert_path]
      key = @config[:redis_tls_client_key_path]
      if cert && key
        params[:cert] = OpenSSL::X509::Certificate.new(File.read(cert))
        params[:key] = OpenSSL::PKey.read(File.read(key))
      end
      { ssl_params: params }
    end

    def http_url
      @config.http_broadcast_url
    end

    def post(url, payload)
      uri = URI(url)
      request = Net::HTTP::Post.new(uri, "Content-Type" => "application/json")
      key = @config.broadcast_key
      request["Authorization"] = "Bearer #{key}" if key && !key.to_s.empty?
      request.body = payload
      response = with_connection(uri) { |http| http.request(request) }
      return if response.code.to_i == 201

      raise Error, "HTTP broadcast to #{url} failed: #{response.code} #{response.body}"
    end

    # A kept-alive connection per thread and server: a broadcast costs one
    # request, not a TCP handshake. A broken connection is replaced once.
    def with_connection(uri)
      connections = (Thread.current[:ferrocable_http] ||= {})
      key = "#{uri.scheme}://#{uri.host}:#{uri.port}"
      attempts = 0
      begin
        http = connections[key] ||= Net::HTTP.start(uri.host, uri.port, use_ssl: uri.scheme == "https",
                                                                         open_timeout: 5, read_timeout: 5,
                                                                         keep_alive_timeout: 30)
        yield http
      rescue IOError, EOFError, SystemCallError, Net::OpenTimeout, Net::ReadTimeout
        connections.delete(key)&.finish rescue nil # rubocop:disable Style/RescueModifier
        attempts += 1
        retry if attempts < 2
        raise
      end
    end
  end
end
