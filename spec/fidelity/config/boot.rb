# frozen_string_literal: true

# No Bundler: Rails, Devise, graphql-ruby, Puma and redis come from Debian's
# packages. With CABLE=ferrocable the app has the gem, as a Gemfile line
# `gem "ferrocable", path: "../.."` would give it; otherwise it is a plain
# Action Cable app that never sees the gem.
$LOAD_PATH.unshift File.expand_path("../../../lib", __dir__) if ENV["CABLE"] == "ferrocable"
