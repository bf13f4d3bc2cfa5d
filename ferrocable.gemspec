# frozen_string_literal: true

require_relative "lib/ferrocable/version"

Gem::Specification.new do |s|
  s.name = "ferrocable"
  s.version = Ferrocable::VERSION
  s.summary = "Action Cable served by a Rust server inside your Rails process"
  s.description = "Ferrocable runs a WebSocket server written in Rust inside the Rails process and calls your " \
                  "Action Cable channels directly; it also serves the AnyCable RPC API for the ferrocable binary " \
                  "and anycable-go."
  s.authors = ["Ferrocable developers"]
  s.license = "MIT"
  s.homepage = "https://github.com/ferrocable/ferrocable"
  s.required_ruby_version = ">= 3.1"
  s.files = Dir[
    "lib/**/*.{rb,rake}", "ext/ferrocable/**/*.{rs,rb,toml}", "src/**/*.rs", "proto/*.proto",
    "build.rs", "Cargo.toml", "Cargo.lock", "README.md",
    # The core crate's other targets: cargo reads them with its manifest. The
    # load generator (bench/) is a workspace of its own and stays out.
    "benches/*.rs", "examples/*.rs"
  ]
  s.require_paths = ["lib"]
  s.extensions = ["ext/ferrocable/extconf.rb"]
  s.add_dependency "actioncable", ">= 6.1", "< 9"
end
