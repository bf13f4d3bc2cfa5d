# frozen_string_literal: true

{ "alice@fidelity.example" => "alice-password", "bob@fidelity.example" => "bob-password" }.each do |email, password|
  User.find_or_create_by!(email: email) { |user| user.password = password }
end
