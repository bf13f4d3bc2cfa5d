# frozen_string_literal: true

require "yaml"
require "erb"

module Ferrocable
  # The gem's configuration: the same option names as the binary
  # (anycable-go's), from `config/ferrocable.yml` (per Rails environment),
  # `config.ferrocable.*`, and options passed in code. Precedence: options
  # set here (code, Rails config, YAML), then `ANYCABLE_*` environment
  # variables, then the gem's defaults, then the core's.
  class Config
    # Options the Ruby side reads itself (not passed to the core).
    RUBY_OPTIONS = %i[worker_pool_size http_broadcast_url].freeze

    DEFAULTS = {
      # Embedded servers take HTTP broadcasts on their own port (curl, other
      # processes) and Rails broadcasts go straight into the hub.
      broadcast_adapter: "http",
      worker_pool_size: 8
    }.freeze

    attr_reader :options

    def initialize_copy(other)
      super
      @options = other.options.dup
    end

    def initialize(options = {})
      @options = {}
      DEFAULTS.each { |k, v| @options[k] = v unless env_set?(k) }
      merge!(options)
    end

    def merge!(options)
      options.each { |k, v| @options[k.to_sym] = v unless v.nil? }
      self
    end

    def [](key)
      value = @options[key.to_sym]
      value = ENV["ANYCABLE_#{key.to_s.upcase}"] if value.nil?
      value
    end

    def broadcast_adapters
      self[:broadcast_adapter].to_s.split(",").map(&:strip).reject(&:empty?)
    end

    def worker_pool_size
      Integer(self[:worker_pool_size] || 8)
    end

    # Flags for the core, e.g. ["--port=8080", "--headers=cookie,origin"].
    def to_args
      options = @options.reject { |k, _| RUBY_OPTIONS.include?(k) }
      # The application's capacity is its worker threads: the share of it
      # Disconnect calls may hold (a quarter of rpc_concurrency) is counted
      # in them, so hanging `disconnect` callbacks never take every worker.
      options[:rpc_concurrency] ||= worker_pool_size unless env_set?(:rpc_concurrency)
      # Disconnect calls stay in the process (no network to spare): they are
      # not paced, so `unsubscribed`/`disconnect` run as the sockets close,
      # as under Action Cable (still at most a quarter of the workers).
      options[:disconnect_rate] ||= 0 unless env_set?(:disconnect_rate)
      options.map do |key, value|
        value = value.join(",") if value.is_a?(Array)
        "--#{key}=#{value}"
      end
    end

    # Options from a YAML file with a section per environment (or flat).
    def self.load_file(path, env)
      return {} unless path && File.exist?(path)

      data = YAML.safe_load(ERB.new(File.read(path)).result, aliases: true) || {}
      data = data[env.to_s] || {} if data.key?(env.to_s) || %w[development test production].any? { |e| data.key?(e) }
      data.transform_keys(&:to_sym)
    end

    private

    def env_set?(key)
      ENV.key?("ANYCABLE_#{key.to_s.upcase}")
    end
  end
end
