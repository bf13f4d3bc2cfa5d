# frozen_string_literal: true

# A small Rails app for the gem's specs: Action Cable channels served by
# Ferrocable, Active Record on SQLite for GlobalID identifiers.
require "rails"
require "active_record/railtie"
require "action_controller/railtie"
require "action_cable/engine"
require "global_id/railtie"
require "ferrocable"
# The Turbo pages test (tests/e2e/pages.sh embedded, DUMMY_TURBO=1) needs
# turbo-rails' verifier key: the real turbo-rails when it can be loaded,
# else a stand-in that derives the key as turbo-rails does. Loaded after
# ferrocable on purpose: the Railtie's hook must not depend on gem order.
if ENV["DUMMY_TURBO"]
  begin
    require "turbo-rails"
  rescue LoadError
    require_relative "../lib/turbo_stand_in"
  end
end

module Dummy
  class Application < Rails::Application
    config.root = File.expand_path("..", __dir__)
    config.load_defaults 6.1
    config.eager_load = false
    config.cache_classes = true
    config.secret_key_base = "ferrocable-dummy-secret-key-base-for-specs-only"
    config.logger = Logger.new(ENV["DUMMY_LOG"] || File::NULL)
    config.log_level = :debug
    config.active_support.deprecation = :stderr
    config.action_cable.disable_request_forgery_protection = true
    config.ferrocable.host = "127.0.0.1"
  end
end
