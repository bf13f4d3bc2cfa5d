# frozen_string_literal: true

require "json"

module Ferrocable
  # Instance variables of a channel object, carried between stateless calls
  # (the gRPC server) in the subscription's `istate`, so a channel that sets
  # `@room` in `subscribed` finds it in later actions there too, as it does
  # in embedded mode. Values that are JSON-like (strings, numbers, booleans,
  # nil, arrays and hashes of them) or records with a GlobalID travel; others
  # stay behind (logged once per class and variable).
  module ChannelState
    KEY = "ivars"
    GID = "$gid"
    # Action Cable's own bookkeeping, rebuilt by the channel's constructor.
    INTERNAL = %i[
      @connection @identifier @params @defer_subscription_confirmation_counter
      @reject_subscription @subscription_confirmation_sent
    ].freeze

    module_function

    # What a channel without state of its own dumps as.
    EMPTY = "{}"

    def dump(channel)
      state = channel.instance_variables.each_with_object({}) do |name, acc|
        next if INTERNAL.include?(name) || name.to_s.start_with?("@_")

        value = encode(channel.instance_variable_get(name))
        value == :skip ? warn_skipped(channel, name) : acc[name.to_s] = value
      end
      # Most channels keep nothing: no encoder for them (ActiveSupport's
      # to_json of an empty Hash was a tenth of a subscribe's Ruby time).
      state.empty? ? EMPTY : state.to_json
    end

    def load(channel, istate)
      json = istate && istate[KEY]
      return if json.nil? || json.empty? || json == EMPTY

      JSON.parse(json).each { |name, value| channel.instance_variable_set(name, decode(value)) }
    end

    def encode(value)
      case value
      when String, Numeric, true, false, nil then value
      when Symbol then value.to_s
      when Array
        items = value.map { |v| encode(v) }
        items.include?(:skip) ? :skip : items
      when Hash
        pairs = value.to_h { |k, v| [k.to_s, encode(v)] }
        pairs.value?(:skip) ? :skip : pairs
      else
        value.respond_to?(:to_global_id) ? { GID => value.to_global_id.to_s } : :skip
      end
    end

    def decode(value)
      case value
      when Array then value.map { |v| decode(v) }
      when Hash
        if value.size == 1 && value.key?(GID)
          GlobalID::Locator.locate(value[GID])
        else
          value.transform_values { |v| decode(v) }
        end
      else value
      end
    end

    def warn_skipped(channel, name)
      key = [channel.class, name]
      @warned ||= {}
      return if @warned[key]

      @warned[key] = true
      Ferrocable.logger.warn("Ferrocable: #{channel.class}##{name} cannot travel between RPC calls " \
                             "(not JSON-like, no GlobalID); it will be nil in later calls")
    end
  end
end
