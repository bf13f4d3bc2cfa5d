# frozen_string_literal: true

module Ferrocable
  # The fast lane's Rails helpers: a token for JWT identification and
  # signed stream names, in the formats the server verifies (made by the
  # core, `Native.jwt_encode` / `Native.sign_stream`), with the keys the
  # core resolves (`jwt_secret` / `streams_secret`, else `secret`).
  #
  #   token = Ferrocable.jwt_token(current_user: user, expires_in: 1.hour)
  #   # the client connects to "wss://cable.example.com/cable?jid=#{token}"
  #
  #   Ferrocable.signed_stream_name([post, :comments])
  #   # => "ImdpZDovL2FwcC9Qb3N0LzE6Y29tbWVudHMi--…", for
  #   #    cable.streamFromSigned(...) in @anycable/web
  module FastLane
    module_function

    # A JWT carrying `identifiers` (as `identified_by` names them; records
    # become GlobalIDs, as anycable-rails serializes them), HS256, valid for
    # `expires_in` seconds (nil: no expiry).
    def jwt_token(config, expires_in: 3600, **identifiers)
      key = config.resolved["effective_jwt_secret"]
      raise ConfigError, "jwt_token needs jwt_secret (or secret)" if key.nil? || key.empty?

      exp = expires_in && (Time.now.to_i + expires_in.to_i)
      Native.jwt_encode(key, Identifiers.from_hash(identifiers), exp)
    end

    # The signed name of a stream for the `$pubsub` channel. Streamables
    # are joined as turbo-rails joins them (records as GlobalIDs, ":").
    def signed_stream_name(config, streamables)
      key = config.resolved["effective_streams_secret"]
      raise ConfigError, "signed_stream_name needs streams_secret (or secret)" if key.nil? || key.empty?

      Native.sign_stream(key, stream_name_from(streamables))
    end

    def stream_name_from(streamables)
      return streamables if streamables.is_a?(String)

      Array(streamables).map do |s|
        s.respond_to?(:to_gid_param) ? s.to_gid_param : s.to_param.to_s
      end.join(":")
    end
  end
end
