# frozen_string_literal: true

namespace :ferrocable do
  desc "Serve Action Cable from this process with Ferrocable (blocks; INT/TERM stop it gracefully)"
  task server: :environment do
    Rails.application.eager_load!
    Ferrocable::Server.new.run
  end

  desc "Serve the AnyCable RPC (gRPC) API for the ferrocable binary or anycable-go (blocks)"
  task rpc: :environment do
    Rails.application.eager_load!
    Ferrocable::Server.new(mode: :rpc).run
  end
end
