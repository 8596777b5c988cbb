# frozen_string_literal: true

module TaskerRuby
  module Handlers
    # ruby/diamond_workflow: start -> (branch_b, branch_c) -> end. For even_number n:
    # start 2n, branch_b 2n+5, branch_c 8n, end (2n+5)*8n (n=6: 12, 17, 48, 816).
    module DiamondWorkflow
      class Start
        def call(step)
          { "value" => step.integer_input("even_number") * 2, "computed_by" => "ruby" }
        end
      end

      class BranchB
        def call(step)
          { "value" => step.dependency_value("ruby_diamond_start") + 5, "computed_by" => "ruby" }
        end
      end

      class BranchC
        def call(step)
          { "value" => step.dependency_value("ruby_diamond_start") * 4, "computed_by" => "ruby" }
        end
      end

      class Join
        def call(step)
          product = step.dependency_value("ruby_diamond_branch_b") * step.dependency_value("ruby_diamond_branch_c")
          { "value" => product, "computed_by" => "ruby" }
        end
      end
    end
  end
end
