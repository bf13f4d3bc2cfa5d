# frozen_string_literal: true

require "tmpdir"
require_relative "application"
Rails.application.initialize!
# A file, not :memory: (each pooled connection would get its own empty database).
db = File.join(Dir.tmpdir, "ferrocable-dummy-#{Process.pid}.sqlite3")
File.delete(db) if File.exist?(db)
at_exit { File.delete(db) if File.exist?(db) }
ActiveRecord::Base.establish_connection(adapter: "sqlite3", database: db, pool: 16)
ActiveRecord::Schema.verbose = false
ActiveRecord::Schema.define do
  create_table :users, force: true do |t|
    t.string :name
  end
end
