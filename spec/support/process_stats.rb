# frozen_string_literal: true

# Readings of a running process from /proc.
module ProcessStats
  # Resident memory (VmRSS) of `pid` (this process by default), in KiB.
  def self.rss_kib(pid = "self")
    File.read("/proc/#{pid}/status")[/^VmRSS:\s+(\d+)/, 1].to_i
  end
end
