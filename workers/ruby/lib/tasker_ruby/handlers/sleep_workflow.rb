# frozen_string_literal: true

module TaskerRuby
  module Handlers
    # ruby/sleep_workflow: one step that takes `context.sleep_ms` milliseconds, to have a
    # step in flight when the worker is told to stop.
    module SleepWorkflow
      MAX_SLEEP_MS = 60_000

      class Sleep
        def call(step)
          sleep_ms = step.integer_input("sleep_ms")
          unless sleep_ms.between?(0, MAX_SLEEP_MS)
            raise PayloadError, "context.sleep_ms must be between 0 and #{MAX_SLEEP_MS}, got #{sleep_ms}"
          end

          sleep(sleep_ms / 1000.0)
          { "slept_ms" => sleep_ms, "computed_by" => "ruby" }
        end
      end
    end
  end
end
