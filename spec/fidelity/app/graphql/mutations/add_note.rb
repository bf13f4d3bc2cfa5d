# frozen_string_literal: true

module Mutations
  # Saves a note and tells the subscribers of its topic.
  class AddNote < GraphQL::Schema::Mutation
    argument :topic, String, required: true
    argument :text, String, required: true

    field :note, Types::NoteType, null: false

    def resolve(topic:, text:)
      note = context[:current_user].notes.create!(text: text)
      FidelitySchema.subscriptions.trigger(:note_added, { topic: topic }, note)
      { note: note }
    end
  end
end
