# frozen_string_literal: true

require "net/http"
require "uri"

# A browser's cookie jar signing in through Devise's own form: GET the form,
# take its authenticity_token and the session cookie, POST it back, keep the
# cookies the answer sets (the rotated session, and the signed and encrypted
# cookies the app's sessions controller adds).
class FidelitySession
  attr_reader :cookies

  def self.sign_in(app, email, password)
    new(app).tap { |session| session.sign_in(email, password) }
  end

  def initialize(app)
    @app = app
    @cookies = {}
  end

  def sign_in(email, password)
    form = request(Net::HTTP::Get.new("/users/sign_in"))
    raise "GET /users/sign_in: #{form.code}" unless form.code == "200"

    token = form.body[/<input[^>]*name="authenticity_token"[^>]*value="([^"]+)"/, 1] ||
            raise("no authenticity_token in Devise's form:\n#{form.body}")
    post = Net::HTTP::Post.new("/users/sign_in")
    post.set_form_data("authenticity_token" => token, "user[email]" => email, "user[password]" => password,
                       "commit" => "Log in")
    answer = request(post)
    unless %w[302 303].include?(answer.code) && URI(answer["Location"].to_s).path == "/"
      raise "sign-in of #{email} failed: #{answer.code} #{answer['Location']}\n#{answer.body}"
    end

    self
  end

  # The page only a signed-in user sees.
  def home
    request(Net::HTTP::Get.new("/"))
  end

  def cookie_header
    @cookies.map { |name, value| "#{name}=#{value}" }.join("; ")
  end

  private

  def request(req)
    req["Cookie"] = cookie_header unless @cookies.empty?
    req["User-Agent"] = "FidelitySpec/1.0"
    response = Net::HTTP.start("127.0.0.1", @app.http_port, open_timeout: FidelityApp::WAIT,
                                                            read_timeout: FidelityApp::WAIT) { |http| http.request(req) }
    Array(response.get_fields("Set-Cookie")).flat_map { |field| field.split("\n") }.each do |line|
      name, value = line.split(";", 2).first.split("=", 2)
      @cookies[name.strip] = value.to_s
    end
    response
  end
end
