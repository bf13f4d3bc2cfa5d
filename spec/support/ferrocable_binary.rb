# frozen_string_literal: true

require "process_child"

# The standalone `ferrocable` binary (target/debug/ferrocable) for specs.
module FerrocableBinary
  ROOT_DIR = File.expand_path("../..", __dir__)
  PATH = File.join(ROOT_DIR, "target", "debug", "ferrocable")

  # Its path, built from the current sources once per process (a no-op when
  # nothing changed), so a stale binary is never used. Built as the cargo
  # integration tests build it (`cargo test` uplifts the binary it runs to
  # target/debug/ferrocable): with the dev-dependencies' features unified, so
  # bin/test compiles the crates once, where `cargo build --bin` would compile
  # tokio and everything above it a second time, without them.
  def self.path
    @path ||= begin
      system("cargo", "test", "--quiet", "--locked", "--no-run", "--test", "binary",
             chdir: ROOT_DIR, exception: true)
      PATH
    end
  end

  # Starts the binary on 127.0.0.1, port 0, plus `args`; returns the child
  # and the port it listens on, from its `listening addr=` log line (keep
  # the log level at info or below). The caller kills it.
  def self.start(*args, env: {}, timeout: 60)
    child = ProcessChild.new([path, "--host=127.0.0.1", "--port=0", *args], env: env)
    [child, child.wait_for(/ listening addr=127\.0\.0\.1:(\d+)/, timeout: timeout)[1].to_i]
  rescue StandardError
    child&.kill
    raise
  end

  # As `start`, for the block; yields the child and the port, and kills the
  # child (by PID) afterwards, whatever happened.
  def self.run(*args, env: {}, timeout: 60)
    child, port = start(*args, env: env, timeout: timeout)
    yield child, port
  ensure
    child&.kill
  end
end
