# frozen_string_literal: true

module Users
  # Devise's sign-in, plus the signed and encrypted cookies the cable
  # connection reads next to the Warden session.
  class SessionsController < Devise::SessionsController
    def create
      super do |user|
        cookies.signed[:fidelity_user_id] = user.id
        cookies.encrypted[:fidelity_email] = user.email
      end
    end
  end
end
