# frozen_string_literal: true

module Types
  class QueryType < GraphQL::Schema::Object
    field :me, UserType, null: true

    def me
      context[:current_user]
    end
  end
end
