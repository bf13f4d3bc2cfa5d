# frozen_string_literal: true

# What any transport between the ferrocable binary and this app's RPC
# server (gRPC, HTTP RPC) must do: the including group defines `url` (the
# binary's WebSocket URL) and `room` (a chat room of its own).
RSpec.shared_examples "the app behind the binary" do
  it "connects, subscribes (hello before the confirmation), performs, broadcasts and disconnects" do
    alice, bob, id = alice_and_bob(url, room)
    alice.perform(id, action: "speak", text: "over #{room}")
    [alice, bob].each do |c|
      expect(c.receive).to eq("identifier" => id, "message" => { "text" => "over #{room}", "from" => "alice" })
    end
    # @said, set in actions, travelled in istate to the later calls.
    alice.perform(id, action: "history")
    expect(alice.receive["message"]).to eq("said" => ["over #{room}"], "room" => room)
    alice.close
    # @room, set in `subscribed`, travelled in istate to the later calls.
    expect_event(:unsubscribed, "alice", room)
    expect_event(:disconnect, "alice")
    bob.close
  end

  it "rejects unauthorized connections and rejected subscriptions" do
    stranger = WsClient.new(url, headers: { "Cookie" => "user=nobody" })
    expect(stranger.receive).to eq("type" => "disconnect", "reason" => "unauthorized", "reconnect" => false)
    client = WsClient.new(url, headers: { "Cookie" => "user=carol" })
    client.welcome
    client.subscribe(chat("secret"))
    expect(client.receive["message"]).to eq("hello" => "carol")
    expect(client.receive["type"]).to eq("reject_subscription")
    client.close
  end
end
