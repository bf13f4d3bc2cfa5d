# frozen_string_literal: true

module Ferrocable
  # A channel answers for its connection's identifiers (`current_user` in
  # channel code): Action Cable's constructor defines a singleton method per
  # identifier on every channel object (`delegate_connection_identifiers`,
  # the same in 6.1, 7.1, 8.1 and main), so every subscription carries a
  # class of its own, ~2.9 KiB of a connection's memory, and every stateless
  # RPC call builds one (and then misses every method cache on it). For
  # channels of Ferrocable's connections the same methods are defined once,
  # in a module prepended to the channel's class: found before the class's
  # own methods and its ancestors', as the singleton methods are, and
  # calling the connection's, as they do. They are not actions a client can
  # perform (ActionMethods), as singleton methods are not. Channels of Action
  # Cable's own server, and test stubs, pass straight through.
  #
  # What differs from singleton methods, and no application is expected to
  # rely on: `singleton_methods` is empty; a module an application prepends
  # to the channel class after its first subscription, or extends a channel
  # object with, comes before the delegating method instead of after it.
  module ChannelIdentifiers
    # The module of one channel class.
    class Delegates < Module; end

    # Channel class => its module (weakly: a class reloaded in development
    # goes with its module).
    @modules = ObjectSpace::WeakMap.new
    # Channel class => [Action Cable's action set, that set without the
    # delegating methods].
    @actions = ObjectSpace::WeakMap.new
    @lock = Mutex.new

    class << self
      # The module of `klass` delegating `identifiers`, defined and
      # prepended the first time (identifiers of another connection class
      # are added to it).
      def delegate(klass, identifiers)
        mod = @modules[klass]
        return if mod && identifiers.all? { |id| mod.method_defined?(id) }

        @lock.synchronize do
          mod = @modules[klass] ||= Delegates.new.tap { |m| klass.prepend(m) }
          identifiers.each do |identifier|
            next if mod.method_defined?(identifier)

            mod.define_method(identifier) { connection.send(identifier) }
          end
          klass.send(:clear_action_methods!) if klass.respond_to?(:clear_action_methods!, true)
        end
      end

      # `actions` (Action Cable's `action_methods` of `klass`) without the
      # delegating methods, unless the channel has a public method of that
      # name of its own, which Action Cable counts as an action.
      def actions_of(klass, actions)
        cached = @actions[klass]
        return cached[1] if cached && cached[0].equal?(actions)

        delegated = klass.ancestors.grep(Delegates).flat_map(&:instance_methods).map(&:to_s)
        hidden = delegated.select { |name| actions.include?(name) && !own_action?(klass, name.to_sym) }
        result = hidden.empty? ? actions : actions - hidden
        @actions[klass] = [actions, result]
        result
      end

      private

      # Whether `name` is an action of `klass` by Action Cable's rule
      # without the delegating modules: public below Base, or public in the
      # class itself.
      def own_action?(klass, name)
        return klass.public_method_defined?(name, false) if ActionCable::Channel::Base.public_method_defined?(name)

        klass.ancestors.take_while { |a| !a.equal?(ActionCable::Channel::Base) }.any? do |a|
          !a.is_a?(Delegates) && a.public_method_defined?(name, false)
        end
      end
    end

    # Action Cable's list of what a client may perform, without the
    # delegating methods (prepended to the channel classes' singleton).
    module ActionMethods
      def action_methods
        ChannelIdentifiers.actions_of(self, super)
      end
    end

    private

    def delegate_connection_identifiers
      # Action Cable's test stubs (`ConnectionStub`) have no server before 7.1.
      return super unless connection.respond_to?(:server) && connection.server.is_a?(CableServer)

      ChannelIdentifiers.delegate(self.class, connection.identifiers)
    end
  end
end

ActionCable::Channel::Base.prepend(Ferrocable::ChannelIdentifiers)
ActionCable::Channel::Base.singleton_class.prepend(Ferrocable::ChannelIdentifiers::ActionMethods)
