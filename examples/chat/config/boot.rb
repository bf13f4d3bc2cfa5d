# frozen_string_literal: true

# No Bundler: Rails and friends come from Debian's packages; Ferrocable from
# this checkout (after `rake compile` at the repository root).
$LOAD_PATH.unshift File.expand_path("../../../lib", __dir__)
