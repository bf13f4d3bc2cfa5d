# frozen_string_literal: true

Rails.application.routes.draw do
  root "sessions#new"
  post "/login", to: "sessions#create"
  post "/logout", to: "sessions#destroy"
  get "/rooms/:id", to: "rooms#show", as: :room
  get "/action_cable.js", to: "assets#action_cable"
end
