# frozen_string_literal: true

# Where an embedded idle subscribed connection's memory goes, on the Ruby
# side: starts probe.rb (the bench app's embedded server), connects N idle
# clients subscribed to BenchmarkChannel (ferrocable-bench idle), and prints
# per connection: RSS (no GC, after a full GC, after malloc_trim), live
# slots, ObjectSpace.memsize_of_all, count_objects and the objects by class.
# Needs `rake compile` and the release ferrocable-bench.
#
#   ruby bench/embedded_memory/run.rb 3000
#   HT=tmp/ht-emb ruby bench/embedded_memory/run.rb 3000      # under heaptrack (Rust and Ruby mallocs)
#   TRACE=1 DUMP=$PWD/tmp/dump.json ruby bench/embedded_memory/run.rb 1000
#   ruby bench/embedded_memory/sites.rb tmp/dump.json 1000   # objects per connection by allocation site
require "json"; require "open3"
n = Integer(ARGV[0] || 2000)
root = File.expand_path("../..", __dir__)
cmd = ["ruby", File.join(__dir__, "probe.rb")]; cmd = ["heaptrack", "-o", ENV["HT"], *cmd] if ENV["HT"]
i, o, t = Open3.popen2({ "TRACE" => ENV["TRACE"], "TRIM_FIRST" => ENV["TRIM_FIRST"] }.compact, *cmd)
line = o.gets until line&.start_with?("READY")
_, port, pid = line.split
stats = ->(label) { i.puts label; l = o.gets until l&.start_with?("STATS"); JSON.parse(l.sub("STATS ", "")) }
sleep 1
b = stats.("before")
i.puts "raw"; l = o.gets until l&.start_with?("RAW"); rb = l.split[1..3].map(&:to_i); puts l
bench = IO.popen([File.join(root, "target/release/ferrocable-bench"), "idle", "--url=ws://127.0.0.1:#{port}/cable",
  "--identifier", {channel: "BenchmarkChannel"}.to_json, "--clients=#{n}", "--pid=#{pid}", "--settle=#{ENV.fetch('HOLD', 60)}", "--json"])
loop { c = IO.popen(["ss", "-Htn", "state", "established", "sport", "= :#{port}"], &:read).lines.size; break if c >= n; sleep 0.5 }
sleep 3
l = nil; i.puts "raw"; l = o.gets until l&.start_with?("RAW"); puts l; ra = l.split[1..3].map(&:to_i)
second = ENV["TRIM_FIRST"] ? "after malloc_trim" : "after GC"
puts "raw rss/conn: as is #{((ra[0] - rb[2]).to_f / n).round(2)}  #{second} #{((ra[1] - rb[2]).to_f / n).round(2)}  " \
     "after GC and malloc_trim #{((ra[2] - rb[2]).to_f / n).round(2)} KiB"
sleep 1 until (s = stats.("mid"))["sessions"] >= n
a = s
if ENV["DUMP"]
  i.puts "dump #{ENV['DUMP']}"; l = o.gets until l&.start_with?("DUMPED")
end
puts "sessions #{a['sessions']}  rss/conn #{((a['rss'] - b['rss']).to_f / n).round(2)} KiB  slots/conn #{((a['live_slots'] - b['live_slots']).to_f / n).round(1)}  memsize_of_all/conn #{((a['memsize'] - b['memsize']).to_f / n).round(0)} B  pages #{b['heap_pages']}->#{a['heap_pages']}"
puts "count_objects deltas per conn:"
a["counts"].each { |k, v| d = (v - b["counts"].fetch(k, 0)).to_f / n; puts "  #{k} #{d.round(2)}" if d.abs >= 0.05 }
puts "by class (count/conn, bytes/conn):"
rows = a["by_class"].map { |k, (c, s)| bc, bs = b["by_class"].fetch(k, [0, 0]); [k, (c - bc).to_f / n, (s - bs).to_f / n] }
rows.select { |_, c, s| c.abs >= 0.05 || s.abs >= 8 }.sort_by { |r| -r[2] }.each { |k, c, s| puts format("  %-60s %7.2f %8.0f", k, c, s) }
Process.kill("TERM", bench.pid) rescue nil
Process.wait(bench.pid) rescue nil
i.close; Process.kill("TERM", t.pid) rescue nil; t.value
