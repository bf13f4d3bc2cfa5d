# frozen_string_literal: true

# turbo-rails' Turbo::StreamsChannel, as the page-load storm's Ruby path
# (bench/turbo_storm) needs it: turbo-rails is not installed here, so this
# stand-in does what its `subscribed` does (turbo-rails 2.0
# app/channels/turbo/streams_channel.rb; 1.0.0 and 1.5.0 read the same,
# checked from a checkout): verify the signed stream name with Turbo's
# verifier (MessageVerifier, SHA256, JSON) and stream from it, or reject.
# Only the key differs: turbo-rails derives it from the app's
# key_generator (spec/dummy/lib/turbo_stand_in.rb does that); the benchmark
# passes one (TURBO_KEY) to the binary and to this channel alike.
module Turbo
  class StreamsChannel < ActionCable::Channel::Base
    VERIFIER = ActiveSupport::MessageVerifier.new(
      ENV.fetch("TURBO_KEY", "bench-turbo-key"), digest: "SHA256", serializer: JSON
    )

    def subscribed
      if (stream_name = VERIFIER.verified(params[:signed_stream_name]))
        stream_from stream_name
      else
        reject
      end
    end
  end
end
