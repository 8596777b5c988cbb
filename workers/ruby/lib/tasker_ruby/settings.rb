# frozen_string_literal: true

module TaskerRuby
  # The process configuration, read from the environment variables every service reads.
  # The config file itself is loaded and validated by the Rust side.
  class Settings
    VARIABLES = %w[TASKER_CONFIG_PATH DATABASE_URL TASKER_WEB_BIND_ADDRESS TASKER_INSTANCE_ID
                   TASKER_TEMPLATE_PATH TASKER_ENV RUST_LOG].freeze

    # Raised for missing or unusable settings; the message says what to do.
    class Invalid < StandardError; end

    attr_reader :env

    def initialize(env = ENV)
      @env = env
    end

    def config_path
      path = env["TASKER_CONFIG_PATH"].to_s
      if path.empty?
        raise Invalid, "TASKER_CONFIG_PATH is not set: point it at a generated worker config, " \
                       "e.g. config/tasker/generated/worker-test.toml (`cargo xtask config --all`)"
      end
      File.expand_path(path)
    end

    # One log line per variable, secrets redacted.
    def summary
      VARIABLES.map do |name|
        value = env[name]
        shown = if value.nil? then "(unset)"
                elsif name == "DATABASE_URL" then self.class.redact_url(value)
                else value
                end
        "#{name}=#{shown}"
      end
    end

    # Hides the password of a database URL, in the userinfo and in a `password=` parameter.
    def self.redact_url(url)
      url.sub(%r{\A([a-z][a-z0-9+.-]*://[^:/@]*):[^@/]*@}i, '\1:***@')
         .gsub(/([?&]password=)[^&]*/i, '\1***')
    end
  end
end
