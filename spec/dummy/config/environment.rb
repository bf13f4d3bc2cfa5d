# frozen_string_literal: true

require "tmpdir"
require "fileutils"
require_relative "application"
Rails.application.initialize!
# A file, not :memory: (each pooled connection would get its own empty database).
db = File.join(Dir.tmpdir, "ferrocable-dummy-#{Process.pid}.sqlite3")
File.delete(db) if File.exist?(db)
# Only the process that made it removes it: forked Puma workers run at_exit too.
owner = Process.pid
at_exit { FileUtils.rm_f(db) if Process.pid == owner }
ActiveRecord::Base.establish_connection(adapter: "sqlite3", database: db, pool: 16)
ActiveRecord::Schema.verbose = false
ActiveRecord::Schema.define do
  create_table :users, force: true do |t|
    t.string :name
  end
end
