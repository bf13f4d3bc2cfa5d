# frozen_string_literal: true

require "spec_helper"
require "securerandom"
require "sqlite3"
require "fidelity_app"
require "fidelity_client"
require "fidelity_session"
require "fidelity_js_client"

# An ordinary production-mode Rails 6.1 app (spec/fidelity: Devise sign-in,
# graphql-ruby subscriptions, a stream with a callback and a coder,
# allowed_request_origins, a slow action, config/cable.yml on Redis) checked
# the same way against each way of serving it. Action Cable itself proves
# each example; Ferrocable embedded must then behave the same, with the
# team's cable.yml (adapter: redis) and with adapter: ferrocable.
#
#   rspec spec/fidelity_spec.rb                            # the three targets, one Puma each
#   rspec spec/fidelity_spec.rb -e "on Action Cable"       # one target
#   rspec spec/fidelity_spec.rb -e "adapter: ferrocable"   # (or "adapter: redis")
#   FIDELITY_WAIT=60 rspec spec/fidelity_spec.rb           # a longer bound on every wait (default 30 s)
module FidelityExamples
  ALICE = ["alice@fidelity.example", "alice-password"].freeze
  BOB = ["bob@fidelity.example", "bob-password"].freeze
  ORIGIN = FidelityApp::ORIGIN
  SUBSCRIPTION = "subscription ($topic: String!) { noteAdded(topic: $topic) { text author { email } } }"
  MUTATION = "mutation ($topic: String!, $text: String!) { addNote(topic: $topic, text: $text) { note { text } } }"

  attr_reader :app

  def alice
    @alice_session
  end

  def bob
    @bob_session
  end

  def user_id(email)
    db = SQLite3::Database.new(File.join(app.dir, "production.sqlite3"), readonly: true)
    db.get_first_value("SELECT id FROM users WHERE email = ?", email)
  ensure
    db&.close
  end

  # A WebSocket to the target's cable, as a browser tab of `session` opens
  # it (no session: a visitor); closed after the example.
  def open_client(session, query: "", origin: ORIGIN, headers: {})
    all = { "User-Agent" => "FidelitySpec/1.0 (websocket-driver)" }
    all["Origin"] = origin if origin
    all["Cookie"] = session.cookie_header if session
    client = FidelityClient.new(app.cable_url(query), headers: all.merge(headers))
    @clients << client
    client
  end

  def connected(session, **options)
    client = open_client(session, **options)
    client.welcome
    client
  end

  # The HTTP status the upgrade request got: 101 (the socket is closed after
  # the example) or the refusal's.
  def handshake_status(session, origin)
    open_client(session, origin: origin)
    101
  rescue FidelityClient::Refused => e
    e.status
  end

  def js_client(session)
    FidelityJsClient.install
    client = FidelityJsClient.new(app.cable_url, origin: ORIGIN, cookie: session&.cookie_header)
    @js_clients << client
    client
  end

  def identifier(channel, **params)
    { channel: channel, **params }.to_json
  end

  # Subscribes to a GraphqlChannel and runs the subscription query on it.
  def graphql_subscribe(client, topic)
    id = identifier("GraphqlChannel", channelId: SecureRandom.hex(4))
    client.subscribe_confirmed(id)
    client.perform(id, action: "execute", query: SUBSCRIPTION, variables: { topic: topic }, operationName: nil)
    expect(client.receive).to eq("identifier" => id, "message" => { "result" => { "data" => {} }, "more" => true })
    id
  end

  def graphql_add_note(client, topic, text)
    id = identifier("GraphqlChannel", channelId: SecureRandom.hex(4))
    client.subscribe_confirmed(id)
    client.perform(id, action: "execute", query: MUTATION, variables: { topic: topic, text: text }, operationName: nil)
    expect(client.receive).to eq("identifier" => id, "message" => {
                                   "result" => { "data" => { "addNote" => { "note" => { "text" => text } } } },
                                   "more" => false
                                 })
  end

  def feed(id, from, text)
    { "identifier" => id, "message" => { "from" => from, "text" => text } }
  end

  def note_added(id, text, author)
    { "identifier" => id, "message" => {
      "result" => { "data" => { "noteAdded" => { "text" => text, "author" => { "email" => author } } } },
      "more" => true
    } }
  end

  def runner!(code)
    status, output = app.runner(code)
    expect(status).to be_success, "rails runner failed (#{status.inspect}):\n#{output}"
  end

  # What the app and the server logged while a failed example ran, for the
  # reader of the failure (the full log is in the target's tmp directory).
  def report_log(example)
    interesting = app.log_since(@log_mark).gsub(/\e\[[0-9;]*m/, "").lines
                     .grep(/error|exception|warn|reject|not allowed|timed out|ferrocable:/i).grep_v(%r{\A\s|\A/}).uniq
    warn("\n---- #{app.name}: log lines of interest during \"#{example.description}\" (#{app.dir})\n" \
         "#{interesting.last(40).join}----")
  end
end

RSpec.shared_examples "the fidelity app" do
  it "signs in through Devise's own form; the session cookie keeps the user signed in" do
    session = FidelitySession.sign_in(app, *FidelityExamples::ALICE)
    expect(session.cookies.keys).to include("_fidelity_session", "fidelity_user_id", "fidelity_email")
    page = session.home
    expect(page.code).to eq("200")
    expect(page.body).to include("Signed in as alice@fidelity.example")
  end

  it "welcomes a signed-in user (env[\"warden\"].user) and rejects a visitor without a session", :aggregate_failures do
    expect(open_client(alice).receive).to include("type" => "welcome")
    visitor = open_client(nil)
    expect(visitor.receive).to eq("type" => "disconnect", "reason" => "unauthorized", "reconnect" => false)
    expect(visitor.wait_closed).not_to be_nil
  end

  it "shows connect the upgrade request: User-Agent, remote_ip behind X-Forwarded-For, query, signed and encrypted cookies" do
    client = connected(alice, query: "?tag=fidelity-42", headers: { "X-Forwarded-For" => "203.0.113.7" })
    id = identifier("RequestChannel")
    expect(client.subscribe_confirmed(id).first).to eq("identifier" => id, "message" => {
                                                         "user_agent" => "FidelitySpec/1.0 (websocket-driver)",
                                                         "remote_ip" => "203.0.113.7",
                                                         "tag" => "fidelity-42",
                                                         "signed_user_id" => user_id("alice@fidelity.example"),
                                                         "encrypted_email" => "alice@fidelity.example",
                                                         "user" => "alice@fidelity.example"
                                                       })
  end

  it "welcomes the allowed_request_origins: the String and a subdomain matching the Regexp" do
    %w[https://fidelity.example https://app.fidelity.example].each do |origin|
      expect(open_client(alice, origin: origin).receive).to include("type" => "welcome"), origin
    end
  end

  it "refuses a forbidden Origin at the handshake, as Action Cable does (HTTP 404)" do
    origins = %w[https://evil.example https://fidelity.example.evil.example http://fidelity.example
                 https://app.fidelity.example:8443]
    expect(origins.to_h { |origin| [origin, handshake_status(alice, origin)] }).to eq(origins.to_h { |o| [o, 404] })
  end

  it "refuses a handshake without an Origin (HTTP 404): the app's origins do not include none" do
    expect(handshake_status(alice, nil)).to eq(404)
  end

  it "runs a stream's coder and callback per subscription: each user receives only their own notes" do
    clients = { alice: connected(alice), bob: connected(bob) }
    ids = { alice: user_id("alice@fidelity.example"), bob: user_id("bob@fidelity.example") }
    id = identifier("NotesChannel")
    clients.each_value { |c| c.subscribe_confirmed(id) }
    token = SecureRandom.hex(3)
    # Each note is awaited by its owner before the next is added, so a note
    # leaked to the other user would be the next thing that user receives.
    %i[alice bob alice bob alice].each_with_index do |user, i|
      text = "#{user}-#{i}-#{token}"
      clients[user].perform(id, action: "add", text: text)
      message = clients[user].receive(waiting_for: "#{user}'s note #{text}")
      expect(message["identifier"]).to eq(id)
      expect(message["message"]).to include("user_id" => ids[user], "text" => text)
      expect(message["message"].keys).to contain_exactly("id", "user_id", "text")
    end
  end

  it "does the same for the official @rails/actioncable client signed in with Devise's session cookie" do
    tabs = { alice: js_client(alice), bob: js_client(bob) }
    tabs.each_value { |tab| expect(tab.next_event).to eq("event" => "connected") }
    ids = { alice: user_id("alice@fidelity.example"), bob: user_id("bob@fidelity.example") }
    token = SecureRandom.hex(3)
    %i[alice bob alice bob alice].each_with_index do |user, i|
      text = "#{user}-#{i}-#{token}"
      tabs[user].add(text)
      event = tabs[user].next_event
      expect(event).to match("event" => "received", "data" => { "id" => Integer, "user_id" => ids[user], "text" => text })
    end
    visitor = js_client(nil)
    expect(visitor.next_event).to eq("event" => "disconnected", "data" => { "willAttemptReconnect" => false })
  end

  it "delivers a broadcast made in the server process to a plain stream's subscribers, once each" do
    clients = [connected(alice), connected(bob)]
    id = identifier("FeedChannel")
    clients.each { |c| c.subscribe_confirmed(id) }
    texts = %w[first second].map { |n| "shout-#{n}-#{SecureRandom.hex(3)}" }
    # The second shout once everyone has the first: Action Cable runs one
    # connection's actions on its worker pool, so two performs sent together
    # may broadcast in either order (seen under load). A copy of the first
    # broadcast would come before the second.
    texts.each do |text|
      clients.first.perform(id, action: "shout", text: text)
      clients.each do |c|
        expect(c.receive(waiting_for: "the broadcast #{text}")).to eq(feed(id, "alice@fidelity.example", text))
      end
    end
  end

  it "delivers ActionCable.server.broadcast from another process (rails runner), once" do
    client = connected(alice)
    id = identifier("FeedChannel")
    client.subscribe_confirmed(id)
    token = SecureRandom.hex(3)
    client.perform(id, action: "shout", text: "before-#{token}")
    expect(client.receive(waiting_for: "the shout")).to eq(feed(id, "alice@fidelity.example", "before-#{token}"))
    runner!("ActionCable.server.broadcast('feed', { 'from' => 'runner', 'text' => 'runner-#{token}' })")
    # Next: the runner's broadcast, not a late copy of the shout.
    expect(client.receive(waiting_for: "the runner's broadcast")).to eq(feed(id, "runner", "runner-#{token}"))
    client.perform(id, action: "shout", text: "after-#{token}")
    expect(client.receive(waiting_for: "the shout")).to eq(feed(id, "alice@fidelity.example", "after-#{token}"))
  end

  it "graphql-ruby: a trigger in the server process (a mutation through the channel) sends the query result" do
    subscriber = connected(alice)
    topic = "topic-#{SecureRandom.hex(3)}"
    sub = graphql_subscribe(subscriber, topic)
    graphql_add_note(connected(bob), topic, "hello #{topic}")
    expect(subscriber.receive(waiting_for: "the subscription's result")).to eq(
      note_added(sub, "hello #{topic}", "bob@fidelity.example")
    )
  end

  it "graphql-ruby: a trigger from another process (rails runner) sends the query result" do
    subscriber = connected(alice)
    topic = "topic-#{SecureRandom.hex(3)}"
    sub = graphql_subscribe(subscriber, topic)
    runner!(<<~RUBY)
      note = User.find_by!(email: "bob@fidelity.example").notes.create!(text: "from runner #{topic}")
      FidelitySchema.subscriptions.trigger(:note_added, { topic: #{topic.inspect} }, note)
    RUBY
    expect(subscriber.receive(waiting_for: "the subscription's result")).to eq(
      note_added(sub, "from runner #{topic}", "bob@fidelity.example")
    )
  end

  it "graphql-ruby: unsubscribe ends a subscription with more: false; later triggers reach only live ones" do
    subscriber = connected(alice)
    writer = connected(bob)
    topic = "topic-#{SecureRandom.hex(3)}"
    ended = graphql_subscribe(subscriber, topic)
    graphql_add_note(writer, topic, "bye")
    expect(subscriber.receive(waiting_for: "more: false")).to eq("identifier" => ended, "message" => { "more" => false })
    live = graphql_subscribe(subscriber, topic)
    graphql_add_note(writer, topic, "after bye")
    expect(subscriber.receive(waiting_for: "the live subscription's result")).to eq(
      note_added(live, "after bye", "bob@fidelity.example")
    )
  end

  it "lets a slow action (4 s) finish and transmit while another connection's fast action answers first" do
    slow_client = connected(alice)
    fast_client = connected(bob)
    id = identifier("SlowChannel")
    [slow_client, fast_client].each { |c| c.subscribe_confirmed(id) }
    token = SecureRandom.hex(4)
    slow_client.perform(id, action: "slow", token: token)
    fast_client.perform(id, action: "fast", token: token)
    fast = fast_client.receive(waiting_for: "the fast action's reply")
    expect(fast).to eq("identifier" => id, "message" => { "action" => "fast", "token" => token })
    slow = slow_client.receive(waiting_for: "the slow action's reply")
    expect(slow).to eq("identifier" => id, "message" => { "action" => "slow", "token" => token })
    expect(fast_client.arrived_at(fast)).to be < slow_client.arrived_at(slow)
  end

  it "hands an exception raised by an action to the connection's rescue_from; the connection keeps working" do
    client = connected(alice)
    id = identifier("ProbeChannel", probe: SecureRandom.hex(4))
    expect(client.subscribe_confirmed(id).first).to eq("identifier" => id, "message" => { "subscribed" => 1 })
    client.perform(id, action: "explode", why: "on purpose")
    expect(client.receive(waiting_for: "what rescue_from transmits")).to eq(
      "type" => "action_failed", "error" => "ApplicationCable::ActionFailed", "message" => "exploded: on purpose"
    )
    client.perform(id, action: "count")
    expect(client.receive).to eq("identifier" => id, "message" => { "subscribed" => 1 })
  end

  it "answers a channel's connection identifier from the connection, before the channel's own method" do
    client = connected(alice)
    id = identifier("ProbeChannel", probe: SecureRandom.hex(4))
    expect(client.subscribe_confirmed(id).first).to eq("identifier" => id, "message" => { "subscribed" => 1 })
    client.perform(id, action: "whoami")
    expect(client.receive).to eq("identifier" => id, "message" => { "current_user" => FidelityExamples::ALICE.first })
  end

  it "ignores a duplicate subscribe (same identifier): no second confirmation, subscribed ran once" do
    client = connected(alice)
    id = identifier("ProbeChannel", probe: SecureRandom.hex(4))
    expect(client.subscribe_confirmed(id).first).to eq("identifier" => id, "message" => { "subscribed" => 1 })
    client.subscribe(id)
    # Two round trips: a confirmation or a second `subscribed` would come
    # before (or instead of) these answers.
    2.times do
      client.perform(id, action: "count")
      expect(client.receive).to eq("identifier" => id, "message" => { "subscribed" => 1 })
    end
  end

  it "stops on SIGTERM (Puma): exits by itself with no exception, and open sockets are closed", :aggregate_failures do
    client = open_client(alice)
    expect(client.receive).to include("type" => "welcome")
    status = app.terminate("TERM")
    expect(app.killed?).to be(false), "Puma did not exit within #{FidelityApp::BOOT_WAIT}s of SIGTERM; KILLed"
    output = File.read(app.puma_log).gsub(/\e\[[0-9;]*m/, "")
    crashed = output.match?(/Error|Exception|can't be called from trap context/)
    expect(crashed).to be(false), "Puma's output shows an exception:\n#{output.lines.last(25).join}"
    # Puma re-raises SIGTERM once stopped (raise_exception_on_sigterm), so
    # under Action Cable the process ends by that signal.
    expect(status.success? || status.termsig == Signal.list["TERM"]).to be(true), status.inspect
    expect(client.wait_closed).not_to be_nil
  end
end

FidelityApp::TARGETS.each_key do |target|
  title = {
    action_cable: "Fidelity app on Action Cable (Puma, /cable, no gem)",
    ferrocable_redis: "Fidelity app on Ferrocable embedded (Puma plugin), cable.yml adapter: redis",
    ferrocable_adapter: "Fidelity app on Ferrocable embedded (Puma plugin), cable.yml adapter: ferrocable"
  }.fetch(target)

  RSpec.describe title, order: :defined, timeout: 600 do
    include FidelityExamples

    before(:all) do
      @app = FidelityApp.new(target).start
      @alice_session = FidelitySession.sign_in(@app, *FidelityExamples::ALICE)
      @bob_session = FidelitySession.sign_in(@app, *FidelityExamples::BOB)
    end

    after(:all) { @app&.stop }

    before do
      @clients = []
      @js_clients = []
      @log_mark = app.log_mark
    end

    after do |example|
      @clients.each(&:close)
      @js_clients.each(&:stop)
      report_log(example) if example.exception
    end

    include_examples "the fidelity app"
  end
end
