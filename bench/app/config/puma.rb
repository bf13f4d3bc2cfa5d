# frozen_string_literal: true

bind "tcp://127.0.0.1:#{ENV.fetch('PORT', 3000)}"
threads 5, 5
workers 0
