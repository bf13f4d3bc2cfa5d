# frozen_string_literal: true

require "action_cable/subscription_adapter/base"

module ActionCable
  module SubscriptionAdapter
    # `adapter: ferrocable` in config/cable.yml: `ActionCable.server.broadcast`
    # goes to Ferrocable (the hub in this process, Redis or HTTP, per
    # `broadcast_adapter`). Subscriptions are the Rust hub's business, so
    # Action Cable's own server cannot serve clients with this adapter.
    class Ferrocable < Base
      def broadcast(channel, payload)
        ::Ferrocable.broadcast(channel, payload)
      end

      def subscribe(channel, _callback, success_callback = nil)
        ::Ferrocable.logger.warn("Ferrocable: Action Cable's own server subscribed to #{channel}; " \
                                 "serve clients with Ferrocable instead")
        success_callback&.call
      end

      def unsubscribe(*); end

      def shutdown; end
    end
  end
end
