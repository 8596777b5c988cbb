# frozen_string_literal: true

require "json"

module TaskerRuby
  # Runs one handler and turns what happens into the outcome JSON the ext expects:
  # `{"status":"success","result":...}` or `{"status":"error","message":...,"error_class":...}`.
  # Every exception a handler raises (even `exit` or a stack overflow) becomes a step error
  # carrying its message; the worker itself keeps running.
  class StepRunner
    def initialize(registry)
      @registry = registry
    end

    def run(handler_name, payload)
      handler = @registry.fetch(handler_name)
      result = handler.call(Step.new(payload))
      success(result)
    rescue Exception => e # rubocop:disable Lint/RescueException -- a handler must not end the worker
      failure(e)
    end

    # JSON text for the ext; a result JSON cannot represent becomes a step error.
    def self.to_json(outcome)
      JSON.generate(outcome)
    rescue JSON::GeneratorError, Encoding::UndefinedConversionError => e
      JSON.generate(failure_outcome(e.class.name, "handler result is not representable as JSON: #{e.message}"))
    end

    def self.failure_outcome(error_class, message)
      { "status" => "error", "message" => message, "error_class" => error_class }
    end

    private

    def success(result)
      { "status" => "success", "result" => result }
    end

    def failure(error)
      self.class.failure_outcome(error.class.name, error.message)
    end
  end
end
