# frozen_string_literal: true

class RoomsController < ApplicationController
  ROOMS = %w[lobby rust rails].freeze

  def show
    return redirect_to(root_path) unless current_user

    @room = params[:id].to_s
    @rooms = (ROOMS + [@room]).uniq
  end
end
