# frozen_string_literal: true

module Subscriptions
  # Notes added on a topic; a note saying "bye" ends the subscription.
  class NoteAdded < GraphQL::Schema::Subscription
    argument :topic, String, required: true

    type Types::NoteType

    def update(topic:)
      object.text == "bye" ? unsubscribe : object
    end
  end
end
