# frozen_string_literal: true

require_relative "application"
Rails.application.initialize!

# The database is created at boot (and left as it is by later processes, such
# as `rails runner`): the schema lives in code, the users are seeded.
ActiveRecord::Schema.verbose = false
load Rails.root.join("db", "schema.rb")
load Rails.root.join("db", "seeds.rb")
