# frozen_string_literal: true

# A stand-in for the one part of turbo-rails the embedded pages test
# (tests/e2e/pages.sh embedded) needs from the app: its stream verifier key.
# turbo-rails is not a Debian package and this machine has no RubyGems
# access, so when `require "turbo-rails"` fails the dummy app loads this.
# It does what turbo-rails 1.1–1.5 (lib/turbo-rails.rb, lib/turbo/engine.rb;
# 2.0's is the same) does, checked by hand against 1.0.0 and 1.5.0 loaded
# from a checkout on Rails 6.1: `Turbo.signed_stream_verifier_key` raises
# until an after_initialize hook registered by the initializer
# "turbo.signed_stream_verifier_key" sets it to
# `Rails.application.key_generator.generate_key("turbo/signed_stream_verifier_key")`.
# The page test derives that key on its own (PBKDF2 of secret_key_base) to
# sign the names, so it checks that the Railtie hands the app's key to the
# core. Nothing else of turbo-rails (helpers, Turbo::StreamsChannel) is
# here: with turbo_streams on, the server answers Turbo::StreamsChannel.
module Turbo
  class << self
    attr_writer :signed_stream_verifier_key

    def signed_stream_verifier_key
      @signed_stream_verifier_key or raise ArgumentError, "Turbo requires a signed_stream_verifier_key"
    end
  end

  class Engine < ::Rails::Railtie
    initializer "turbo.signed_stream_verifier_key" do
      config.after_initialize do
        Turbo.signed_stream_verifier_key = Rails.application.key_generator.generate_key("turbo/signed_stream_verifier_key")
      end
    end
  end
end
