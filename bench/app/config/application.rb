# frozen_string_literal: true

# The benchmark app: BenchmarkChannel (websocket-shootout semantics), served
# by Action Cable on Puma, by Ferrocable embedded, or over gRPC to the binary
# (bench/compare picks with CABLE_ADAPTER and the command it runs).
# FERROCABLE_LIB: another copy of the gem's lib/ (bench/compare's
# ferrocable-embedded-base target: a build to compare with, in one run).
$LOAD_PATH.unshift ENV.fetch("FERROCABLE_LIB") { File.expand_path("../../../lib", __dir__) }
require "rails"
require "action_controller/railtie"
require "action_cable/engine"
require "ferrocable"

module Bench
  class Application < Rails::Application
    config.load_defaults 6.1
    config.root = File.expand_path("..", __dir__)
    config.eager_load = true
    config.cache_classes = true
    config.secret_key_base = "ferrocable-bench-secret-key-base"
    config.logger = ActiveSupport::Logger.new(ENV.fetch("BENCH_LOG", File::NULL))
    config.log_level = :warn
    config.hosts.clear
    config.action_cable.disable_request_forgery_protection = true
    # The same number of Ruby threads runs channel code in every target.
    config.action_cable.worker_pool_size = Integer(ENV.fetch("WORKERS", 4))
    config.ferrocable.worker_pool_size = Integer(ENV.fetch("WORKERS", 4))
    config.ferrocable.host = "127.0.0.1"
    config.ferrocable.log_level = "warn"
  end
end
