# frozen_string_literal: true

require_relative "handlers/linear_workflow"
require_relative "handlers/diamond_workflow"
require_relative "handlers/failing_workflow"
require_relative "handlers/sleep_workflow"

module TaskerRuby
  # The handlers of the `ruby` namespace (templates in config/tasks/ruby/).
  module Handlers
    NAMESPACE = "ruby"

    ALL = {
      "ruby_linear_step_1" => LinearWorkflow::Triple.new,
      "ruby_linear_step_2" => LinearWorkflow::AddSeven.new,
      "ruby_linear_step_3" => LinearWorkflow::Square.new,
      "ruby_linear_step_4" => LinearWorkflow::Decrement.new,
      "ruby_diamond_start" => DiamondWorkflow::Start.new,
      "ruby_diamond_branch_b" => DiamondWorkflow::BranchB.new,
      "ruby_diamond_branch_c" => DiamondWorkflow::BranchC.new,
      "ruby_diamond_end" => DiamondWorkflow::Join.new,
      "ruby_failing_step" => FailingWorkflow::AlwaysFails.new,
      "ruby_sleep_step" => SleepWorkflow::Sleep.new
    }.freeze

    def self.registry
      ALL.each_with_object(HandlerRegistry.new) { |(name, handler), registry| registry.register(name, handler) }
    end
  end
end
