# frozen_string_literal: true

module Types
  class NoteType < GraphQL::Schema::Object
    field :id, ID, null: false
    field :text, String, null: false
    field :author, UserType, null: false, method: :user
  end
end
