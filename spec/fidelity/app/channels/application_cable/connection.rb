# frozen_string_literal: true

module ApplicationCable
  # The standard Devise connection: the Warden user of the session cookie, or
  # rejected. It also keeps what it saw of the upgrade request, which
  # RequestChannel reports, and reports actions that fail with ActionFailed.
  class Connection < ActionCable::Connection::Base
    identified_by :current_user

    rescue_from ActionFailed, with: :report_action_failed

    attr_reader :request_seen

    def connect
      self.current_user = env["warden"].user || reject_unauthorized_connection
      @request_seen = {
        "user_agent" => request.headers["User-Agent"],
        "remote_ip" => request.remote_ip,
        "tag" => request.params[:tag],
        "signed_user_id" => cookies.signed[:fidelity_user_id],
        "encrypted_email" => cookies.encrypted[:fidelity_email]
      }
    end

    private

    def report_action_failed(error)
      transmit(type: "action_failed", error: error.class.name, message: error.message)
    end
  end
end
