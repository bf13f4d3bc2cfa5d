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

    # `app`: the Rack app to run the handshake through; by default the
    # Rails application, looked up at each handshake (a server built before
    # Rails finished initializing still gets the middleware once it has);
    # nil runs Action Cable's part only.
    def initialize(cable_server, app: :rails)
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
      if env.key?(ENV_KEY) && status.to_i == 404
        # The app does not route this path to Action Cable (no mount_path, a
        # standalone cable server, another mount path): its middleware has
        # run; Action Cable takes the request from there. (Rails' own 404
        # for an unknown route loses X-Cascade on the way out, so the status
        # is what tells.)
        close(body)
        status, headers, body = endpoint.call(env)
      end
      text = read(body)
      return [connection, nil] if status.to_i == -1 && connection

      status = status.to_i.between?(100, 999) ? status.to_i : 500
      [nil, [status, header_pairs(headers), text.scrub]]
    end

    private

    ACTION_CABLE_ONLY = ->(env) { env[ENV_KEY].call(env) }

    def app
      app = @app == :rails ? Handshake.rails_app : @app
      app || ACTION_CABLE_ONLY
    end

    # Checked against Action Cable 6.1 through 8.1 (`Connection::Base.new(server,
    # env)`, the socket in `@websocket`); Rails main is moving to
    # `new(server, socket)` and will need a branch here when it ships.
    def build_connection(env, socket)
      connection = @cable_server.config.connection_class.call.new(@cable_server, env)
      connection.instance_variable_set(:@websocket, socket)
      connection
    end
    # Embedded mode rebuilds a restored session's connection with it.
    public :build_connection

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
      (headers || {}).map { |name, value| [name.to_s.scrub, Array(value).join("\n").scrub] }
    end
  end
end

ActionCable::Server::Base.prepend(Ferrocable::Handshake::ServerHook)
