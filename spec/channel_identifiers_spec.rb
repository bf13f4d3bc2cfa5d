# frozen_string_literal: true

# Channels of Ferrocable's connections answer for the connection's
# identifiers (`current_user` in channel code) as Action Cable's do
# (spec/fidelity_spec.rb checks that against Action Cable itself), without
# a singleton class per channel object: the methods live in one module per
# channel class.
# Twins: the same methods; only the first is ever served by Ferrocable, so
# the second's action list is Action Cable's own.
module ChannelIdentifiersSpec
  METHODS = proc do
    def subscribed; end

    def speak(_data); end
  end
  OWN_CURRENT_USER = proc do
    def current_user
      "the channel's own"
    end
  end
  Served = Class.new(ApplicationCable::Channel, &METHODS)
  Plain = Class.new(ApplicationCable::Channel, &METHODS)
  ServedOwn = Class.new(ApplicationCable::Channel) { class_eval(&METHODS) && class_eval(&OWN_CURRENT_USER) }
  PlainOwn = Class.new(ApplicationCable::Channel) { class_eval(&METHODS) && class_eval(&OWN_CURRENT_USER) }
end

RSpec.describe Ferrocable::ChannelIdentifiers do
  let(:cable) { Ferrocable::CableServer.new }
  let(:handler) do
    Ferrocable::EmbeddedHandler.new(cable_server: cable, handshake: Ferrocable::Handshake.new(cable, app: nil))
  end
  let(:env) { { "url" => "http://127.0.0.1/cable?guest=#{guest}", "headers" => {}, "cstate" => {}, "istate" => {} } }
  let(:guest) { "guest-#{SecureRandom.hex(3)}" }

  def subscribed_channel(sid, channel)
    identifier = { channel: channel }.to_json
    expect(handler.call("id" => 1, "kind" => "connect", "sid" => sid, "env" => env)["status"]).to eq("success")
    reply = handler.call("id" => 2, "kind" => "command", "sid" => sid, "command" => "subscribe",
                         "identifier" => identifier, "data" => "")
    expect(reply["status"]).to eq("success")
    session = handler.instance_variable_get(:@sessions)[sid]
    session.connection.subscriptions.send(:subscriptions)[identifier]
  end

  after do
    handler.instance_variable_get(:@sessions).each_key do |sid|
      handler.call("id" => 3, "kind" => "disconnect", "sid" => sid, "subscriptions" => [])
    end
  end

  it "answers for the connection's identifiers without a singleton method per channel" do
    channel = subscribed_channel("ids-1", "ChatChannel")
    expect(channel.current_user).to eq(guest)
    expect(channel.singleton_methods).to be_empty
    expect(channel.method(:current_user).owner).to be_a(Module)
    expect(channel.class.ancestors.first).to eq(channel.method(:current_user).owner)
  end

  it "defines the module once per channel class, whatever the number of subscriptions" do
    first = subscribed_channel("ids-2", "ChatChannel")
    ancestors = ChatChannel.ancestors.size
    second = subscribed_channel("ids-3", "ChatChannel")
    expect(ChatChannel.ancestors.size).to eq(ancestors)
    expect(first.current_user).to eq(guest)
    expect(second.current_user).to eq(guest)
  end

  it "does not make the identifiers actions a client can perform, as Action Cable's singleton methods are not" do
    channel = subscribed_channel("ids-4", "ChannelIdentifiersSpec::Served")
    expect(channel.current_user).to eq(guest)
    expect(ChannelIdentifiersSpec::Served.action_methods).to eq(ChannelIdentifiersSpec::Plain.action_methods)
    expect(ChannelIdentifiersSpec::Served.action_methods).to eq(Set["speak", "subscribed"])
  end

  it "keeps a channel's own public method named like an identifier an action, as Action Cable does" do
    channel = subscribed_channel("ids-5", "ChannelIdentifiersSpec::ServedOwn")
    expect(channel.current_user).to eq(guest)
    expect(ChannelIdentifiersSpec::ServedOwn.action_methods).to eq(ChannelIdentifiersSpec::PlainOwn.action_methods)
    expect(ChannelIdentifiersSpec::ServedOwn.action_methods).to include("current_user")
  end

  it "leaves Action Cable's test stubs alone (ConnectionStub has no server before Action Cable 7.1)" do
    require "action_cable/channel/test_case"
    connection = ActionCable::Channel::ConnectionStub.new(current_user: "carol")
    channel = ChatChannel.new(connection, { channel: "ChatChannel" }.to_json, {})
    expect(channel.current_user).to eq("carol")
  end

  it "leaves channels of Action Cable's own server as Action Cable builds them" do
    connection = ApplicationCable::Connection.new(ActionCable.server, Rack::MockRequest.env_for("/cable"))
    connection.current_user = "plain"
    channel = ChatChannel.new(connection, { channel: "ChatChannel" }.to_json, {})
    expect(channel.singleton_methods).to eq([:current_user])
    expect(channel.current_user).to eq("plain")
  end
end
