# frozen_string_literal: true

module Ferrocable
  # Rails integration: `config.ferrocable.*`, `config/ferrocable.yml`, the
  # HTTP RPC endpoint's route, the rake tasks, and a fresh start in forked
  # children.
  class Railtie < Rails::Railtie
    config.ferrocable = ActiveSupport::OrderedOptions.new

    initializer "ferrocable.config" do |app|
      file = Config.load_file(app.root.join("config", "ferrocable.yml").to_s, Rails.env)
      Ferrocable.config = Config.new(file.merge(app.config.ferrocable.to_h))
      Ferrocable.logger = Rails.logger if Rails.logger
    end

    # HTTP RPC (`http_rpc: true` or `http_rpc_mount_path:`), mounted before
    # the app's own routes, as AnyCable's Rails integration mounts its own.
    initializer "ferrocable.http_rpc" do |app|
      config.after_initialize do
        path = Ferrocable.config.http_rpc_mount_path
        if path
          # Built on its first request, so processes that serve no HTTP
          # (assets:precompile, migrations, Sidekiq) boot without its secret.
          endpoint = HTTPRPC.lazy
          app.routes.prepend { mount endpoint => path, :internal => true }
        end
      end
    end

    # Turbo Streams in the server (`turbo_streams: true`): the names
    # turbo-rails signs are verified with turbo-rails' own key
    # (`Turbo.signed_stream_verifier_key`, binary by default: handed to the
    # core as hex), so nothing else needs configuring. turbo-rails 1.0 sets
    # that key in its initializer "turbo.signed_stream_verifier_key", 1.1+
    # in an after_initialize hook registered there: running after that
    # initializer puts this hook after turbo-rails' whichever gem the
    # Gemfile loads first. The key is handed over before `turbo_streams` is
    # read (reading it resolves, and checks, the configuration, which
    # refuses turbo_streams without a key). Checked against turbo-rails
    # 1.0.0 and 1.5.0 (Rails 6.1) and 2.0.21's engine.rb.
    initializer "ferrocable.turbo_streams", after: "turbo.signed_stream_verifier_key" do
      config.after_initialize { Railtie.adopt_turbo_key(Ferrocable.config) }
    end

    # Gives `config` turbo-rails' verifier key, when turbo-rails is loaded
    # and has one (the core uses it only with turbo_streams on).
    def self.adopt_turbo_key(config)
      return unless defined?(::Turbo) && ::Turbo.respond_to?(:signed_stream_verifier_key)

      key = begin
        ::Turbo.signed_stream_verifier_key.to_s
      rescue ArgumentError # turbo-rails without a key: nothing to verify with
        ""
      end
      config.merge!(turbo_streams_key_hex: key.unpack1("H*")) unless key.empty?
    end

    rake_tasks do
      load File.expand_path("tasks.rake", __dir__)
    end
  end
end
