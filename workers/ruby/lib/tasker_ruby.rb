# frozen_string_literal: true

# The Ruby worker: Ruby step handlers on top of the Rust `tasker-worker` runtime, loaded
# through Fiddle from the `tasker-worker-ruby-ext` cdylib.
module TaskerRuby
end

require_relative "tasker_ruby/step"
require_relative "tasker_ruby/handler_registry"
require_relative "tasker_ruby/step_runner"
require_relative "tasker_ruby/native"
require_relative "tasker_ruby/settings"
require_relative "tasker_ruby/worker_loop"
require_relative "tasker_ruby/handlers"
