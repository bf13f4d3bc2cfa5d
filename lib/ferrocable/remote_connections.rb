# frozen_string_literal: true

module Ferrocable
  # `ActionCable.server.remote_connections.where(current_user: user).disconnect`
  # becomes a Ferrocable remote-disconnect publication for sessions with
  # those identifiers, wherever they are connected.
  module RemoteConnections
    def disconnect(reconnect: true)
      ids = identifiers.to_h { |id| [id, instance_variable_get("@#{id}")] }
      ::Ferrocable.broadcaster.disconnect(Identifiers.from_hash(ids), reconnect: reconnect)
    end
  end
end

ActionCable::RemoteConnections::RemoteConnection.prepend(Ferrocable::RemoteConnections)
