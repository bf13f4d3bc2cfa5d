# frozen_string_literal: true

module ApplicationCable
  # Identifies the user by the `user` cookie (a User record); `?boom=1`
  # raises in connect, `?guest=name` identifies a plain string.
  class Connection < ActionCable::Connection::Base
    identified_by :current_user

    cattr_accessor :events, default: Queue.new

    def connect
      raise "connect exploded" if request.params[:boom]

      self.current_user = request.params[:guest] || User.find_by(name: cookies[:user]) || reject_unauthorized_connection
    end

    def disconnect
      name = current_user.respond_to?(:name) ? current_user.name : current_user
      events << [:disconnect, name]
    end
  end
end
