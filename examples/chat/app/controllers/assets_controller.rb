# frozen_string_literal: true

# Serves the official Action Cable client from the actioncable gem itself.
class AssetsController < ActionController::Base
  # A static script: Rails' guard against cross-origin JavaScript embedding
  # does not apply.
  skip_forgery_protection
  CLIENT = ActionCable::Engine.root.join("app", "assets", "javascripts", "action_cable.js")

  def action_cable
    expires_in 1.hour, public: true
    send_file CLIENT, type: "text/javascript", disposition: "inline"
  end
end
