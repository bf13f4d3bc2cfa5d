# frozen_string_literal: true

ActiveRecord::Schema.define(version: 1) do
  create_table :messages, if_not_exists: true do |t|
    t.string :room, null: false
    t.string :user, null: false
    t.text :body, null: false
    t.datetime :created_at, null: false
    t.index %i[room created_at]
  end
end
