# frozen_string_literal: true

module TaskerRuby
  # Raised by handlers when the step payload lacks what they need; it becomes a step
  # error with this message like any other exception.
  class PayloadError < StandardError; end

  # Read-only view of the payload the Rust runtime hands to a handler:
  # `{"step_name":..., "context":{...}, "dependency_results":{"<step>":<result>, ...}}`.
  class Step
    attr_reader :payload

    def initialize(payload)
      raise PayloadError, "step payload must be a JSON object, got #{payload.inspect}" unless payload.is_a?(Hash)

      @payload = payload
    end

    def name
      payload["step_name"]
    end

    def context
      context = payload["context"]
      raise PayloadError, "step payload has no `context` object" unless context.is_a?(Hash)

      context
    end

    # An integer from the task context, e.g. `integer_input("even_number")`.
    def integer_input(key)
      value = context[key]
      raise PayloadError, "context.#{key} must be an integer, got #{value.inspect}" unless value.is_a?(Integer)

      value
    end

    # The integer `value` a dependency step produced.
    def dependency_value(step_name)
      results = payload["dependency_results"]
      result = results[step_name] if results.is_a?(Hash)
      value = result["value"] if result.is_a?(Hash)
      unless value.is_a?(Integer)
        raise PayloadError, "missing integer result `value` of dependency #{step_name} (got #{result.inspect})"
      end

      value
    end
  end
end
