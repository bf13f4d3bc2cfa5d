# frozen_string_literal: true

module Ferrocable
  VERSION = "0.1.0"
end
