# frozen_string_literal: true

module Ferrocable
  # Runs a WebSocket handshake the way a request to the mounted Action Cable
  # server runs under Puma: through the application's own Rack middleware
  # (sessions, cookies, Warden/Devise, RemoteIp with trusted proxies,
  # HostAuthorization, ...) and its routes to `ActionCable.server`, where
  # the application's connection class is built and Action Cable's own
  # `process` checks the origin (`allowed_request_origins`,
  # `allow_same_origin_as_host`, `disable_request_forgery_protection`).
  # The connection object it builds is the one that serves the socket, so
  # `env["warden"]`, `session`, `cookies.signed` and `request.remote_ip` are
  # what they are under Action Cable.
  #
  # A handshake Action Cable would upgrade answers [-1, {}, []]; anything
  # else (a 404 for a forbidden origin, a middleware's 403 or redirect) is
  # the HTTP response the client gets instead of the upgrade.
  class Handshake
    ENV_KEY = "ferrocable.handshake"

    # Routes the handshake to Ferrocable when a request reaches the mounted
    # Action Cable server (`ActionCable::Server::Base#call`, the Rack entry
    # point in Action Cable 5.0 through 8.x); every other request is Action
    # Cable's.
    module ServerHook
      def call(env)
        handshake = env[ENV_KEY]
        handshake ? handshake.call(env) : super
      end
    end

    def initialize(cable_server, app: Handshake.rails_app)
      @cable_server = cable_server
      @app = app
    end

    # The Rails application, once initialized (its middleware stack built).
    def self.rails_app
      return unless defined?(::Rails) && ::Rails.respond_to?(:application)

      app = ::Rails.application
      app if app.respond_to?(:initialized?) && app.initialized?
    end

    # Returns [connection, nil] for a handshake to upgrade, or
    # [nil, [status, [[name, value], ...], body]] for one refused.
    def call(env, socket)
      connection = nil
      endpoint = lambda do |app_env|
        app_env.delete(ENV_KEY)
        connection = build_connection(app_env, socket)
        connection.process
      end
      env[ENV_KEY] = endpoint
      status, headers, body = app.call(env)
      if env.key?(ENV_KEY) && cascaded?(status, headers)
        # The app does not route this path to Action Cable (no mount_path,
        # a standalone cable server): its middleware has run; Action Cable
        # takes the request from there.
        close(body)
        status, headers, body = endpoint.call(env)
      end
      text = read(body)
      return [connection, nil] if status.to_i == -1 && connection

      [nil, [status.to_i, header_pairs(headers), text]]
    end

    private

    def app
      @app || ->(env) { env[ENV_KEY].call(env) }
    end

    def build_connection(env, socket)
      connection = @cable_server.config.connection_class.call.new(@cable_server, env)
      connection.instance_variable_set(:@websocket, socket)
      connection
    end

    def cascaded?(status, headers)
      status.to_i == 404 && headers && (headers["X-Cascade"] || headers["x-cascade"]) == "pass"
    end

    # Reads and closes a Rack body (closing completes what middleware such
    # as the Rails executor started for this request).
    def read(body)
      text = +""
      body&.each { |part| text << part.to_s }
      text
    ensure
      close(body)
    end

    def close(body)
      body.close if body.respond_to?(:close)
    end

    def header_pairs(headers)
      (headers || {}).map { |name, value| [name.to_s, Array(value).join("\n")] }
    end
  end
end

ActionCable::Server::Base.prepend(Ferrocable::Handshake::ServerHook)
