# frozen_string_literal: true

# Action Cable's own server (the baseline target).
require_relative "config/environment"
map("/cable") { run ActionCable.server }
