# frozen_string_literal: true

Devise.setup do |config|
  config.mailer_sender = "accounts@fidelity.example"
  require "devise/orm/active_record"
  config.case_insensitive_keys = [:email]
  config.strip_whitespace_keys = [:email]
  config.skip_session_storage = [:http_auth]
  config.stretches = 12
  config.sign_out_via = :delete
end
