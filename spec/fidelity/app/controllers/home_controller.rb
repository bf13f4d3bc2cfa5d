# frozen_string_literal: true

class HomeController < ApplicationController
  before_action :authenticate_user!, only: :show

  def show; end

  # Readiness, and which cable server this process runs (the Action Cable
  # target must run without the gem).
  def up
    render json: {
      status: "ok",
      ferrocable: defined?(::Ferrocable) ? true : false,
      adapter: ActionCable.server.config.cable[:adapter]
    }
  end
end
