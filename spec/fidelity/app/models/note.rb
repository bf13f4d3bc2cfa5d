# frozen_string_literal: true

class Note < ApplicationRecord
  belongs_to :user

  def to_broadcast
    as_json(only: %i[id user_id text])
  end
end
