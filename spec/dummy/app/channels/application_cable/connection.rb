# frozen_string_literal: true

module ApplicationCable
  # Identifies the user by the `user` cookie (a User record); `?boom=1`
  # raises in connect (`?binary_boom=1` with a message that is not UTF-8),
  # `?guest=name` identifies a plain string.
  class Connection < ActionCable::Connection::Base
    identified_by :current_user

    # What the callbacks did: read by specs in this process, or (DUMMY_EVENTS
    # names a file) by a spec that runs the app in a child process.
    cattr_accessor :events, default: ENV["DUMMY_EVENTS"] ? EventLog.new(ENV["DUMMY_EVENTS"]) : Queue.new

    def connect
      raise "connect exploded" if request.params[:boom]
      raise "connect exploded on \xff\xfe".b if request.params[:binary_boom]

      self.current_user = request.params[:guest] || User.find_by(name: cookies[:user]) || reject_unauthorized_connection
      events << [:connect, current_user.respond_to?(:name) ? current_user.name : current_user]
    end

    def disconnect
      name = current_user.respond_to?(:name) ? current_user.name : current_user
      events << [:disconnect, name]
    end
  end
end
