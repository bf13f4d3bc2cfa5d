# frozen_string_literal: true

# Where the app's callbacks record what they did when it runs in another
# process than the spec (Puma): one JSON line per event, appended to a file
# (O_APPEND keeps lines from several workers whole).
class EventLog
  def initialize(path)
    @path = path
  end

  def <<(event)
    File.open(@path, "a") { |f| f.write("#{event.to_json}\n") }
    self
  end
end
