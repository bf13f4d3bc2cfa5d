# frozen_string_literal: true

# The identifiers string is compared as bytes (remote disconnects find a
# connection by it, in Ferrocable and in anycable-go), so it must be what
# ActiveSupport's `to_json` writes, whichever encoder writes it.
RSpec.describe Ferrocable::Identifiers do
  def by_active_support(hash)
    hash.map { |k, v| [k.to_s, v] }.sort_by(&:first).to_h.to_json
  end

  it "writes what ActiveSupport's to_json writes" do
    random = Random.new(15)
    strings = ["plain", "a<b", "x>y", "&amp;", "ü", "\u2028", "\u2029", "\"quoted\"", "back\\slash", "tab\t",
               "nul\u0000", "/slash/", "gid://app/User/1", "😀", "\xff".b.force_encoding("UTF-8"), "",
               "é".b, "ascii".b, "é".encode("ISO-8859-1"), "ü<".encode("ISO-8859-1"), "\u2028".b,
               "utf16".encode("UTF-16LE"), "ok".encode("US-ASCII")]
    values = strings + [nil, true, false, 0, -1, 2**70, 1.5, :sym, [1, "a<"], { "k" => "v&" }]
    2_000.times do
      hash = Array.new(random.rand(1..4)) do |i|
        ["#{strings.sample(random: random).encode('UTF-8', invalid: :replace, undef: :replace)}_#{i}",
         values.sample(random: random)]
      end.to_h
      expected = begin
        by_active_support(hash)
      rescue StandardError => e
        e.class
      end
      actual = begin
        described_class.from_hash(hash)
      rescue StandardError => e
        e.class
      end
      expect([hash, actual]).to eq([hash, expected])
    end
  end

  it "writes a record as its GlobalID" do
    user = Struct.new(:id) { def to_global_id = "gid://dummy/User/#{id}" }.new(7)
    expect(described_class.from_hash(user: user, room: "a")).to eq('{"room":"a","user":"gid://dummy/User/7"}')
  end
end
