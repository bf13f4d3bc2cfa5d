# frozen_string_literal: true

# rails server with Ferrocable: Puma serves the pages, the plugin starts the
# WebSocket server (CABLE_PORT) in the same process.
require_relative "boot" # puts Ferrocable on the load path (no Bundler here)
port ENV.fetch("PORT", 3000)
bind "tcp://#{ENV.fetch('BIND', '0.0.0.0')}:#{ENV.fetch('PORT', 3000)}" if ENV["BIND"]
threads 2, 4
# WEB_CONCURRENCY=2 (with REDIS_URL, see ferrocable.yml): a Puma cluster,
# one Ferrocable server per worker on the same port.
workers Integer(ENV.fetch("WEB_CONCURRENCY", 0))
plugin :ferrocable
