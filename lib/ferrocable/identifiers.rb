# frozen_string_literal: true

require "json"

module Ferrocable
  # Connection identifiers as AnyCable serialises them: a JSON object of
  # identifier name => value, with records as GlobalID URIs. Keys are sorted,
  # so `remote_connections.where(...)` builds the same string for the same
  # identities.
  module Identifiers
    # What ActiveSupport's JSON encoder escapes and the JSON gem does not
    # (HTML entities, JavaScript's line separators: Rails 6.1 through 8.1).
    ESCAPED_BY_ACTIVE_SUPPORT = /[<>&\u2028\u2029]/.freeze

    module_function

    def serialize_value(value)
      if value.respond_to?(:to_global_id)
        value.to_global_id.to_s
      else
        value
      end
    end

    # The identifiers string of a connection object.
    def of(connection)
      from_hash(connection.identifiers.to_h { |id| [id, connection.instance_variable_get("@#{id}")] })
    end

    def from_hash(hash)
      pairs = hash.map { |k, v| [k.to_s, serialize_value(v)] }.sort_by!(&:first).to_h
      # `to_json` is ActiveSupport's (a fifth of a connect's Ruby time);
      # where its output cannot differ, the JSON gem writes the same bytes.
      plain?(pairs) ? JSON.generate(pairs) : pairs.to_json
    end

    def plain?(pairs)
      pairs.all? do |name, value|
        plain_string?(name) &&
          (value.is_a?(String) ? plain_string?(value) : value.nil? || value.is_a?(Integer) || value == true || value == false)
      end
    end

    # UTF-8 (or ASCII) that the JSON gem writes as ActiveSupport does; other
    # encodings take ActiveSupport's path, which transcodes them.
    def plain_string?(string)
      (string.encoding == Encoding::UTF_8 || string.ascii_only?) && string.valid_encoding? &&
        !string.match?(ESCAPED_BY_ACTIVE_SUPPORT)
    end

    # Restores identifier instance variables on a fresh connection object
    # (stateless calls), locating GlobalID records.
    def restore(connection, json)
      return if json.nil? || json.empty?

      JSON.parse(json).each do |name, value|
        connection.instance_variable_set("@#{name}", deserialize_value(value))
      end
    end

    def deserialize_value(value)
      if value.is_a?(String) && value.start_with?("gid://") && defined?(GlobalID::Locator)
        GlobalID::Locator.locate(value) || value
      else
        value
      end
    end
  end
end
