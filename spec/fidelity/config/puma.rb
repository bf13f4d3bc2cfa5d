# frozen_string_literal: true

# `rails server` for the fidelity app: Action Cable mounted at /cable, or with
# CABLE=ferrocable also the Ferrocable plugin (its WebSocket on CABLE_PORT).
require_relative "boot"

environment ENV.fetch("RAILS_ENV", "production")
threads 5, 5
bind "tcp://127.0.0.1:#{ENV.fetch('PORT', 3000)}"
plugin :ferrocable if ENV["CABLE"] == "ferrocable"
