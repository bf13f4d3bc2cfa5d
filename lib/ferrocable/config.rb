# frozen_string_literal: true

require "json"
require "yaml"
require "erb"

module Ferrocable
  # The gem's configuration: the options the user set, with the binary's
  # names (anycable-go's), from `config/ferrocable.yml` (per Rails
  # environment), `config.ferrocable.*` and options passed in code. The core
  # resolves everything else (`ANYCABLE_*` variables, a file named by
  # `config_path`, the gem's defaults, anycable-go's), so the server and the
  # broadcaster use one resolution: `resolved`. Precedence: options set here,
  # then `ANYCABLE_*` variables, then the file, then the defaults.
  class Config
    # Options the Ruby side reads itself (not passed to the core), from here
    # or their `ANYCABLE_*` variable.
    RUBY_OPTIONS = %i[worker_pool_size http_broadcast_url http_rpc http_rpc_mount_path].freeze

    DEFAULT_WORKER_POOL_SIZE = 8

    attr_reader :options

    def initialize_copy(other)
      super
      @options = other.options.dup
      @resolved = nil
    end

    def initialize(options = {})
      @options = {}
      merge!(options)
    end

    def merge!(options)
      options.each { |k, v| @options[k.to_sym] = v unless v.nil? }
      self
    end

    # An option's resolved value: what the user set, else the core's
    # resolution (environment, file, defaults).
    def [](key)
      key = key.to_sym
      return ruby_option(key) if RUBY_OPTIONS.include?(key) || !resolved.key?(key.to_s)

      resolved[key.to_s]
    end

    # The core's resolution (Ferrocable::Native.resolve_config) of the
    # options set here: every option, plus `effective_broadcast_key`,
    # `http_broadcast_url` and `args` (flags that load it again). Raises
    # ConfigError naming a bad, unknown or refused option. Resolved again
    # when the options change.
    def resolved
      snapshot = @options.dup
      return @resolved if @resolved && @resolved_for == snapshot

      @resolved = JSON.parse(Native.resolve_config(user_args, worker_pool_size))
      @resolved_for = snapshot
      @resolved
    end

    def broadcast_adapters
      Array(resolved["broadcast_adapter"])
    end

    # The key HTTP broadcasts carry: the one the core requires of them.
    def broadcast_key
      resolved["effective_broadcast_key"]
    end

    # Where HTTP broadcasts go from a process without a server: the
    # `http_broadcast_url` option, else the endpoint this configuration
    # serves.
    def http_broadcast_url
      ruby_option(:http_broadcast_url) || resolved["http_broadcast_url"]
    end

    # The token HTTP RPC calls carry (HTTPRPC requires it): the core's
    # resolution of http_rpc_secret, else one derived from secret.
    def http_rpc_secret
      resolved["effective_http_rpc_secret"]
    end

    # Where the Railtie mounts HTTPRPC: `http_rpc_mount_path`, else
    # `/_anycable` with `http_rpc: true` (AnyCable's Rails options), else
    # nowhere.
    def http_rpc_mount_path
      path = ruby_option(:http_rpc_mount_path).to_s
      return path unless path.empty?

      HTTPRPC::DEFAULT_MOUNT_PATH if %w[true 1 yes on].include?(ruby_option(:http_rpc).to_s.downcase)
    end

    def worker_pool_size
      Integer(ruby_option(:worker_pool_size) || DEFAULT_WORKER_POOL_SIZE)
    end

    # Flags for the core's server: the resolved configuration.
    def to_args
      resolved["args"]
    end

    # Options from a YAML file with a section per environment (or flat).
    def self.load_file(path, env)
      return {} unless path && File.exist?(path)

      data = YAML.safe_load(ERB.new(File.read(path)).result, aliases: true) || {}
      data = data[env.to_s] || {} if data.key?(env.to_s) || %w[development test production].any? { |e| data.key?(e) }
      data.transform_keys(&:to_sym)
    end

    private

    def ruby_option(key)
      @options.fetch(key) { ENV["ANYCABLE_#{key.to_s.upcase}"] }
    end

    # The options the user set, as flags (e.g. ["--port=8080",
    # "--headers=cookie,origin"]).
    def user_args
      @options.reject { |k, _| RUBY_OPTIONS.include?(k) }.map do |key, value|
        value = value.join(",") if value.is_a?(Array)
        "--#{key}=#{value}"
      end
    end
  end
end
