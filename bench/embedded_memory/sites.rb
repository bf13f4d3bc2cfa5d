# frozen_string_literal: true

# Groups an ObjectSpace.dump_all (made with allocation tracing) by type,
# class and allocation site; prints the sites with about one object or more
# per connection (count and bytes per connection). Boot-time sites (the
# application's code, kernel_require) show too: read them as such.
#   ruby bench/embedded_memory/sites.rb DUMP CONNECTIONS
require "json"
n = Integer(ARGV[1] || 1000)
groups = Hash.new { |h, k| h[k] = [0, 0] }
classes = {}
lines = File.foreach(ARGV[0]).map { |l| JSON.parse(l) }
lines.each { |o| classes[o["address"]] = o["name"] if o["type"] == "CLASS" || o["type"] == "MODULE" }
lines.each do |o|
  next unless o["file"]
  k = [o["type"], classes[o["class"]] || "", "#{o['file'].sub(%r{.*/gems/}, '')}:#{o['line']}"]
  g = groups[k]; g[0] += 1; g[1] += o["memsize"].to_i
end
groups.select { |_, (c, _)| c >= n * 0.9 }.sort_by { |_, (c, s)| -s }.first(80).each do |(t, c, site), (cnt, size)|
  puts format("%-7s %-38s %6.2f %7.0f  %s", t, c[0, 38], cnt.to_f / n, size.to_f / n, site)
end
