# frozen_string_literal: true

module Types
  class MutationType < GraphQL::Schema::Object
    field :add_note, mutation: Mutations::AddNote
  end
end
