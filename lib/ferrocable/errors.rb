# frozen_string_literal: true

module Ferrocable
  # Base class of every error Ferrocable raises (from Ruby or from the
  # native extension).
  class Error < StandardError; end

  # A bad option: unknown name, bad value, bad combination.
  class ConfigError < Error; end
end
