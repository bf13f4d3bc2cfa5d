# frozen_string_literal: true

module Ferrocable
  # Rails integration: `config.ferrocable.*`, `config/ferrocable.yml`, the
  # rake tasks, and a fresh start in forked children.
  class Railtie < Rails::Railtie
    config.ferrocable = ActiveSupport::OrderedOptions.new

    initializer "ferrocable.config" do |app|
      file = Config.load_file(app.root.join("config", "ferrocable.yml").to_s, Rails.env)
      Ferrocable.config = Config.new(file.merge(app.config.ferrocable.to_h))
      Ferrocable.logger = Rails.logger if Rails.logger
    end

    rake_tasks do
      load File.expand_path("tasks.rake", __dir__)
    end
  end
end
