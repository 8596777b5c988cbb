# frozen_string_literal: true

module TaskerRuby
  module Handlers
    # ruby/linear_workflow: four chained steps. For even_number n the values are
    # 3n, 3n+7, (3n+7)^2, (3n+7)^2-1 (n=6: 18, 25, 625, 624), unlike the Rust worker's
    # squaring chain, so a test can tell which worker ran them.
    module LinearWorkflow
      class Triple
        def call(step)
          { "value" => step.integer_input("even_number") * 3, "computed_by" => "ruby" }
        end
      end

      class AddSeven
        def call(step)
          { "value" => step.dependency_value("ruby_linear_step_1") + 7, "computed_by" => "ruby" }
        end
      end

      class Square
        def call(step)
          value = step.dependency_value("ruby_linear_step_2")
          { "value" => value * value, "computed_by" => "ruby" }
        end
      end

      class Decrement
        def call(step)
          { "value" => step.dependency_value("ruby_linear_step_3") - 1, "computed_by" => "ruby" }
        end
      end
    end
  end
end
