# frozen_string_literal: true

require_relative "boot"
require "rails"
require "active_record/railtie"
require "action_controller/railtie"
require "action_view/railtie"
require "action_cable/engine"
require "global_id/railtie"
require "ferrocable"

module Chat
  # A chat with rooms, history in SQLite, and a "who is here" list; Action
  # Cable served by Ferrocable inside this process.
  class Application < Rails::Application
    config.load_defaults 6.1
    config.root = File.expand_path("..", __dir__)
    config.eager_load = true
    config.cache_classes = true
    config.secret_key_base = ENV.fetch("SECRET_KEY_BASE", "ferrocable-chat-demo-secret-key-base-change-me-in-production")
    config.logger = ActiveSupport::Logger.new($stdout)
    config.log_level = ENV.fetch("LOG_LEVEL", "info")
    config.action_cable.disable_request_forgery_protection = true
    config.hosts.clear
    config.public_file_server.enabled = true
    # Ferrocable listens on its own port (rails server serves the pages).
    config.ferrocable.host = ENV.fetch("CABLE_HOST", "0.0.0.0")
    config.ferrocable.port = Integer(ENV.fetch("CABLE_PORT", 8080))
  end
end
