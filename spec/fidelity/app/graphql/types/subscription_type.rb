# frozen_string_literal: true

module Types
  class SubscriptionType < GraphQL::Schema::Object
    field :note_added, subscription: Subscriptions::NoteAdded
  end
end
