# frozen_string_literal: true

class User < ApplicationRecord
  devise :database_authenticatable
  has_many :notes, dependent: :destroy
end
