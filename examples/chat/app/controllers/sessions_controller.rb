# frozen_string_literal: true

# The login form: a name, kept in a signed cookie that the WebSocket
# connection reads too.
class SessionsController < ApplicationController
  def new
    redirect_to room_path("lobby") if current_user
  end

  def create
    name = params[:name].to_s.strip[0, 32]
    return redirect_to(root_path, alert: "Pick a name") if name.empty?

    cookies.signed[:user] = { value: name, httponly: true }
    redirect_to room_path(params[:room].presence || "lobby")
  end

  def destroy
    cookies.delete(:user)
    redirect_to root_path
  end
end
