# frozen_string_literal: true

require_relative "test_helper"

class HandlersTest < Minitest::Test
  include TestSupport

  def value(outcome)
    assert_equal "success", outcome["status"], outcome.inspect
    outcome["result"]["value"]
  end

  def test_linear_chain_computes_on_the_previous_result
    results = {}
    expected = { "ruby_linear_step_1" => 18, "ruby_linear_step_2" => 25, "ruby_linear_step_3" => 625,
                 "ruby_linear_step_4" => 624 }
    expected.each_key do |name|
      outcome = run_step(name, dependency_results: results.dup)
      results[name] = outcome["result"]
    end
    assert_equal expected, results.transform_values { |result| result["value"] }
    assert(results.values.all? { |result| result["computed_by"] == "ruby" })
  end

  def test_linear_differs_from_input_scaling
    assert_equal 30, value(run_step("ruby_linear_step_1", context: { "even_number" => 10 }))
    assert_equal 37, value(run_step("ruby_linear_step_2",
                                    dependency_results: { "ruby_linear_step_1" => { "value" => 30 } }))
  end

  def test_diamond_branches_and_join
    start = value(run_step("ruby_diamond_start"))
    deps = { "ruby_diamond_start" => { "value" => start } }
    branch_b = value(run_step("ruby_diamond_branch_b", dependency_results: deps))
    branch_c = value(run_step("ruby_diamond_branch_c", dependency_results: deps))
    joined = value(run_step("ruby_diamond_end",
                            dependency_results: { "ruby_diamond_branch_b" => { "value" => branch_b },
                                                  "ruby_diamond_branch_c" => { "value" => branch_c } }))
    assert_equal [12, 17, 48, 816], [start, branch_b, branch_c, joined]
  end

  def test_failing_handler_becomes_an_error_with_its_message
    outcome = run_step("ruby_failing_step")
    assert_equal({ "status" => "error",
                   "message" => TaskerRuby::Handlers::FailingWorkflow::MESSAGE,
                   "error_class" => "TaskerRuby::Handlers::FailingWorkflow::IntentionalFailure" }, outcome)
  end

  def test_malformed_context_is_a_step_error_naming_the_key
    outcome = run_step("ruby_linear_step_1", context: { "even_number" => "six" })
    assert_equal "error", outcome["status"]
    assert_equal "TaskerRuby::PayloadError", outcome["error_class"]
    assert_equal 'context.even_number must be an integer, got "six"', outcome["message"]
  end

  def test_missing_context_and_non_object_payload_are_step_errors
    outcome = TaskerRuby::StepRunner.new(TaskerRuby::Handlers.registry).run("ruby_diamond_start", { "step_name" => "x" })
    assert_equal "step payload has no `context` object", outcome["message"]
    outcome = TaskerRuby::StepRunner.new(TaskerRuby::Handlers.registry).run("ruby_diamond_start", [1, 2])
    assert_equal "step payload must be a JSON object, got [1, 2]", outcome["message"]
  end

  def test_missing_dependency_result_is_a_step_error
    outcome = run_step("ruby_diamond_end", dependency_results: { "ruby_diamond_branch_b" => { "value" => 1 } })
    assert_equal "error", outcome["status"]
    assert_match(/missing integer result `value` of dependency ruby_diamond_branch_c/, outcome["message"])
  end

  def test_unknown_handler_is_a_step_error
    outcome = TaskerRuby::StepRunner.new(TaskerRuby::Handlers.registry).run("nope", payload("nope"))
    assert_equal "KeyError", outcome["error_class"]
    assert_equal 'no Ruby handler registered as "nope"', outcome["message"]
  end

  def test_sleep_bounds_are_checked
    outcome = run_step("ruby_sleep_step", context: { "sleep_ms" => -1 })
    assert_equal "context.sleep_ms must be between 0 and 60000, got -1", outcome["message"]
    assert_equal({ "slept_ms" => 1, "computed_by" => "ruby" }, run_step("ruby_sleep_step", context: { "sleep_ms" => 1 })["result"])
  end

  def test_even_a_non_standard_error_does_not_escape_the_runner
    registry = TaskerRuby::HandlerRegistry.new.register("exits", ->(_step) { exit 3 })
    outcome = TaskerRuby::StepRunner.new(registry).run("exits", payload("exits"))
    assert_equal "SystemExit", outcome["error_class"]
  end

  def test_unrepresentable_result_becomes_an_error_outcome
    text = TaskerRuby::StepRunner.to_json({ "status" => "success", "result" => Float::NAN })
    outcome = JSON.parse(text)
    assert_equal "error", outcome["status"]
    assert_match(/not representable as JSON/, outcome["message"])
  end

  def test_registry_rejects_duplicates_and_non_callables
    registry = TaskerRuby::HandlerRegistry.new.register("a", ->(_) { {} })
    assert_raises(ArgumentError) { registry.register("a", ->(_) { {} }) }
    assert_raises(ArgumentError) { registry.register("b", Object.new) }
    assert_equal %w[a], registry.names
  end

  def test_every_template_handler_of_the_ruby_namespace_is_registered
    root = File.expand_path("../../../config/tasks/ruby", __dir__)
    handlers = Dir[File.join(root, "*", "*.toml")].flat_map do |file|
      File.read(file).scan(/^handler = "([^"]+)"/).flatten
    end
    refute_empty handlers
    assert_empty handlers.uniq - TaskerRuby::Handlers.registry.names
  end
end
