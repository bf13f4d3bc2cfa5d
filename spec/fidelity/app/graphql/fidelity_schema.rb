# frozen_string_literal: true

class FidelitySchema < GraphQL::Schema
  query Types::QueryType
  mutation Types::MutationType
  subscription Types::SubscriptionType

  use GraphQL::Subscriptions::ActionCableSubscriptions
end
