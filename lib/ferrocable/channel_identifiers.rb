# frozen_string_literal: true

module Ferrocable
  # A channel answers for its connection's identifiers (`channel.current_user`):
  # Action Cable's constructor defines a singleton method per identifier on
  # every channel object (`delegate_connection_identifiers`, the same in 6.1,
  # 7.1, 8.1 and main), so every subscription carries a class of its own,
  # ~2.9 KiB of a connection's memory, and every stateless RPC call builds
  # one. For channels of Ferrocable's connections the same methods are
  # defined once, in a module prepended to the channel's class: found before
  # the class's own methods, as the singleton methods are, and calling the
  # connection's, as they do. Channels of Action Cable's own server pass
  # straight through.
  module ChannelIdentifiers
    # Channel class => its module (weakly: a class reloaded in development
    # goes with its module).
    @modules = ObjectSpace::WeakMap.new
    @lock = Mutex.new

    # The module of `klass` delegating `identifiers`, defined and prepended
    # the first time (identifiers of another connection class are added).
    def self.delegate(klass, identifiers)
      mod = @modules[klass]
      return if mod && identifiers.all? { |id| mod.method_defined?(id) }

      @lock.synchronize do
        mod = @modules[klass] ||= Module.new.tap { |m| klass.prepend(m) }
        identifiers.each do |identifier|
          next if mod.method_defined?(identifier)

          mod.define_method(identifier) { connection.send(identifier) }
        end
      end
    end

    private

    def delegate_connection_identifiers
      return super unless connection.server.is_a?(CableServer)

      ChannelIdentifiers.delegate(self.class, connection.identifiers)
    end
  end
end

ActionCable::Channel::Base.prepend(Ferrocable::ChannelIdentifiers)
