# frozen_string_literal: true

# The bench app's embedded server (production), driven by run.rb over
# stdin: "raw" prints the RSS before and after a full GC and after
# malloc_trim; any other line prints (after full GCs) the RSS, the live
# slots, ObjectSpace.memsize_of_all, heap pages and the objects by class as
# JSON; "dump PATH" writes ObjectSpace.dump_all (TRACE=1: with allocation
# sites, ObjectSpace.trace_object_allocations_start before the app loads).
$stdout.sync = true
ENV["RAILS_ENV"] = "production"
ENV["BENCH_LOG"] = File::NULL
require "objspace"
ObjectSpace.trace_object_allocations_start if ENV["TRACE"]
require File.expand_path("../app/config/environment", __dir__)
Rails.application.eager_load!
server = Ferrocable::Server.new.start
puts "READY #{server.port} #{Process.pid}"
def rss = File.read("/proc/self/status")[/^VmRSS:\s+(\d+)/, 1].to_i
while (line = $stdin.gets)
  cmd, arg = line.split
  if cmd == "raw"
    require "fiddle"
    trim = Fiddle::Function.new(Fiddle::Handle::DEFAULT["malloc_trim"], [Fiddle::TYPE_SIZE_T], Fiddle::TYPE_INT)
    r0 = rss
    if ENV["TRIM_FIRST"] # malloc_trim without a GC first (what the server itself could do)
      trim.call(0)
      r1 = rss
      GC.start(full_mark: true, immediate_sweep: true)
    else
      GC.start(full_mark: true, immediate_sweep: true)
      r1 = rss
    end
    trim.call(0)
    r2 = rss
    puts "RAW #{r0} #{r1} #{r2} free_slots=#{GC.stat[:heap_free_slots]} pages=#{GC.stat[:heap_allocated_pages]}"
    next
  end
  3.times { GC.start(full_mark: true, immediate_sweep: true) }
  case cmd
  when "dump"
    File.open(arg, "w") { |f| ObjectSpace.dump_all(output: f) }
    puts "DUMPED"
  else
    counts = ObjectSpace.count_objects
    memsize = ObjectSpace.memsize_of_all
    by_class = Hash.new(0)
    by_class_size = Hash.new(0)
    ObjectSpace.each_object do |o|
      k = (o.class rescue BasicObject)
      by_class[k] += 1
      by_class_size[k] += ObjectSpace.memsize_of(o)
    end
    h = { "label" => cmd, "rss" => rss, "live_slots" => GC.stat[:heap_live_slots], "memsize" => memsize,
          "heap_pages" => GC.stat[:heap_allocated_pages], "malloc_increase" => GC.stat[:malloc_increase_bytes],
          "sessions" => server.handler.session_count,
          "counts" => counts, "by_class" => by_class.to_h { |k, v| [k.to_s, [v, by_class_size[k]]] } }
    puts "STATS #{JSON.generate(h)}"
  end
end
