# frozen_string_literal: true

# Writes the Makefile `gem install` runs: it builds the extension with cargo
# (the Rust toolchain must be installed) and installs the library where
# `require "ferrocable/ferrocable_ext"` finds it. No RubyGems-hosted build
# helper is needed.

require "rbconfig"

root = File.expand_path("../..", __dir__)
dlext = RbConfig::CONFIG["DLEXT"]
# CARGO_TARGET_DIR, when set, lets installs share a build cache (which
# `make clean` then leaves alone: it is not ours to delete).
shared_target = ENV["CARGO_TARGET_DIR"]
target_dir = shared_target || File.join(Dir.pwd, "target")
clean_target = shared_target ? "" : target_dir

File.write("Makefile", <<~MAKE)
  RUBYARCHDIR ?= #{RbConfig::CONFIG['sitearchdir']}
  DLLIB = ferrocable_ext.#{dlext}

  all: $(DLLIB)

  $(DLLIB):
  \tcd #{root} && CARGO_TARGET_DIR=#{target_dir} cargo build --release --locked -p ferrocable-ext
  \tcp #{target_dir}/release/libferrocable_ext.so $(DLLIB) 2>/dev/null || cp #{target_dir}/release/libferrocable_ext.dylib $(DLLIB)

  # Copy, then rename over: a process that has the previous library loaded
  # keeps its file (rewriting it in place would kill it with SIGBUS).
  install: $(DLLIB)
  \tmkdir -p $(RUBYARCHDIR)/ferrocable
  \tcp $(DLLIB) $(RUBYARCHDIR)/ferrocable/$(DLLIB).tmp
  \tmv -f $(RUBYARCHDIR)/ferrocable/$(DLLIB).tmp $(RUBYARCHDIR)/ferrocable/$(DLLIB)

  clean:
  \trm -rf #{clean_target} $(DLLIB)
MAKE
