# frozen_string_literal: true

require "minitest/autorun"
require "json"
require "logger"
require "stringio"
require_relative "../lib/tasker_ruby"

module TestSupport
  # A payload shaped like the one the Rust runtime hands to handlers.
  def payload(step_name, context: { "even_number" => 6 }, dependency_results: {})
    { "step_name" => step_name, "context" => context, "dependency_results" => dependency_results }
  end

  def run_step(name, **options)
    TaskerRuby::StepRunner.new(TaskerRuby::Handlers.registry).run(name, payload(name, **options))
  end

  # The native library; tests that need it fail (never skip) with the build command.
  def native
    @native ||= TaskerRuby::Native.new(TaskerRuby::Native.locate)
  end
end
