# frozen_string_literal: true

require "puma/plugin"

# `plugin :ferrocable` in config/puma.rb: `rails server` also serves Action
# Cable with Ferrocable. Single mode runs one server once Puma has booted;
# cluster mode runs one per worker, all on the same port (SO_REUSEPORT), so
# set `broadcast_adapter: redis` for broadcasts to reach every worker.
# Stopping runs where Puma calls its hooks, which in single mode is its
# SIGTERM trap handler: Ferrocable::Server#stop is safe there.
module Ferrocable
  module PumaPlugin
    APP_WAIT_SECONDS = 120

    class << self
      attr_reader :server

      def start(reuse_port:)
        require "ferrocable"
        Ferrocable.reset!
        @server = Ferrocable::Server.new.start(reuse_port: reuse_port)
      end

      # Starts once the Rails application is initialized (a worker without
      # preload_app! loads it after the boot hooks run).
      def start_when_ready(reuse_port:)
        if app_ready?
          start(reuse_port: reuse_port)
        else
          Thread.new do
            deadline = Process.clock_gettime(Process::CLOCK_MONOTONIC) + APP_WAIT_SECONDS
            sleep 0.05 until app_ready? || Process.clock_gettime(Process::CLOCK_MONOTONIC) > deadline
            app_ready? ? start(reuse_port: reuse_port) : warn("Ferrocable: the Rails app never finished booting")
          end
        end
      end

      def stop
        @server&.stop
        @server = nil
      end

      private

      def app_ready?
        defined?(Rails) && Rails.respond_to?(:application) && Rails.application&.initialized?
      end
    end
  end
end

Puma::Plugin.create do
  def config(dsl)
    dsl.on_worker_boot { Ferrocable::PumaPlugin.start_when_ready(reuse_port: true) }
    dsl.on_worker_shutdown { Ferrocable::PumaPlugin.stop }
  end

  def start(launcher)
    return if launcher.options[:workers].to_i.positive?

    launcher.events.on_booted { Ferrocable::PumaPlugin.start_when_ready(reuse_port: false) }
    launcher.events.on_stopped { Ferrocable::PumaPlugin.stop }
    # A hot restart (SIGUSR2) replaces the process with exec: stop first, so
    # clients hear server_restart and the disconnect callbacks run.
    launcher.events.on_restart { Ferrocable::PumaPlugin.stop }
  end
end
