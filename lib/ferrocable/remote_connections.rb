# frozen_string_literal: true

module Ferrocable
  # `ActionCable.server.remote_connections.where(current_user: user).disconnect`
  # with `adapter: ferrocable`: a Ferrocable remote-disconnect publication
  # for sessions with those identifiers, wherever they are connected. With
  # the app's own adapter (redis, ...) Action Cable's code runs unchanged:
  # its message reaches each connection's internal channel through that
  # adapter (see StreamRelay).
  module RemoteConnections
    def disconnect(reconnect: true)
      unless ::ActionCable.server.pubsub.is_a?(::ActionCable::SubscriptionAdapter::Ferrocable)
        # Action Cable 6.1's disconnect takes no argument; 7.0+ takes reconnect:.
        return method(__method__).super_method.arity.zero? ? super() : super(reconnect: reconnect)
      end

      ids = identifiers.to_h { |id| [id, instance_variable_get("@#{id}")] }
      ::Ferrocable.broadcaster.disconnect(Identifiers.from_hash(ids), reconnect: reconnect)
    end
  end
end

ActionCable::RemoteConnections::RemoteConnection.prepend(Ferrocable::RemoteConnections)
