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
    # core as hex), so nothing else needs configuring.
    initializer "ferrocable.turbo_streams" do
      config.after_initialize do
        if Ferrocable.config[:turbo_streams] && defined?(::Turbo) &&
           ::Turbo.respond_to?(:signed_stream_verifier_key)
          key = ::Turbo.signed_stream_verifier_key.to_s
          Ferrocable.config.merge!(turbo_streams_key_hex: key.unpack1("H*")) unless key.empty?
        end
      end
    end

    rake_tasks do
      load File.expand_path("tasks.rake", __dir__)
    end
  end
end
