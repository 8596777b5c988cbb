# frozen_string_literal: true

module TaskerRuby
  module Handlers
    # ruby/failing_workflow: the error path. The exception's message is what the step
    # error must carry.
    module FailingWorkflow
      class IntentionalFailure < StandardError; end

      MESSAGE = "ruby_failing_step always fails: intentional failure for the error path"

      class AlwaysFails
        def call(_step)
          raise IntentionalFailure, MESSAGE
        end
      end
    end
  end
end
