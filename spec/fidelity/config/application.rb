# frozen_string_literal: true

require_relative "boot"
require "rails"
require "active_record/railtie"
require "action_controller/railtie"
require "action_view/railtie"
require "action_mailer/railtie"
require "action_cable/engine"
require "global_id/railtie"
require "devise"
require "graphql"
require "ferrocable" if ENV["CABLE"] == "ferrocable"

module Fidelity
  # The app a Rails team has on the day it adds Ferrocable: Devise sign-in,
  # graphql-ruby subscriptions, a stream with a callback, origin protection,
  # a slow action, Redis as the cable adapter. The fidelity specs run it
  # under Action Cable (Puma) to prove each behaviour, then under Ferrocable.
  class Application < Rails::Application
    config.load_defaults 6.1
    config.root = File.expand_path("..", __dir__)
    config.time_zone = "UTC"
  end
end
