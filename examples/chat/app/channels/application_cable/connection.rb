# frozen_string_literal: true

module ApplicationCable
  # The user is the name in the signed cookie the login form sets.
  class Connection < ActionCable::Connection::Base
    identified_by :current_user

    def connect
      self.current_user = cookies.signed[:user].presence || reject_unauthorized_connection
    end
  end
end
