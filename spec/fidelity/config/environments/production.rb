# frozen_string_literal: true

require "fileutils"

Rails.application.configure do
  config.cache_classes = true
  config.eager_load = true
  config.consider_all_requests_local = false
  config.action_controller.perform_caching = true
  # The secret comes from SECRET_KEY_BASE, as in any production deployment.

  log_file = ENV.fetch("FIDELITY_LOG") { Rails.root.join("tmp", "log", "production.log").to_s }
  FileUtils.mkdir_p(File.dirname(log_file))
  config.logger = ActiveSupport::TaggedLogging.new(ActiveSupport::Logger.new(log_file))
  config.log_level = ENV.fetch("RAILS_LOG_LEVEL", "info")
  config.log_tags = [:request_id]

  # Browsers may open the cable from the app's own domain and its subdomains.
  config.action_cable.allowed_request_origins = [
    "https://fidelity.example",
    /\Ahttps:\/\/[a-z]+\.fidelity\.example\z/
  ]

  config.action_mailer.default_url_options = { host: "fidelity.example", protocol: "https" }
  config.i18n.fallbacks = true
  config.active_support.deprecation = :notify
  config.active_record.dump_schema_after_migration = false
end
