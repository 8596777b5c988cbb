# frozen_string_literal: true

require_relative "test_helper"

# Runs Ruby handlers through the real FFI library, fed by its synthetic mode (no database).
class NativeTest < Minitest::Test
  include TestSupport

  def quiet_logger
    Logger.new(File::NULL)
  end

  def worker_loop(runtime, grace: 1.0, logger: quiet_logger)
    TaskerRuby::WorkerLoop.new(runtime: runtime, runner: TaskerRuby::StepRunner.new(TaskerRuby::Handlers.registry),
                               logger: logger, grace: grace)
  end

  # A logger whose lines also go to `lines`, so a test can wait for one.
  def queue_logger(lines)
    sink = Object.new
    sink.define_singleton_method(:write) { |line| lines << line && line.bytesize }
    sink.define_singleton_method(:close) { nil }
    Logger.new(sink)
  end

  def test_missing_library_names_the_build_command
    error = assert_raises(TaskerRuby::LibraryMissing) do
      TaskerRuby::Native.locate({ "TASKER_RUBY_EXT_PATH" => "/nonexistent/libtasker_worker_ruby_ext.so" })
    end
    assert_match(/cargo build -p tasker-worker-ruby-ext/, error.message)
    error = assert_raises(TaskerRuby::LibraryMissing) { TaskerRuby::Native.locate({ "CARGO_TARGET_DIR" => "/nonexistent" }) }
    assert_match(%r{looked in /nonexistent/debug/.*run `cargo build -p tasker-worker-ruby-ext`}, error.message)
  end

  def test_results_and_exceptions_cross_the_ffi
    runtime = native.start_synthetic({ "handlers" => %w[ruby_linear_step_1 ruby_failing_step], "count" => 4,
                                       "context" => { "even_number" => 6 } })
    loop = worker_loop(runtime)
    assert_equal "synthetic feed of 4 steps finished", loop.run
    assert_equal({ "dispatched" => 4, "succeeded" => 2, "failed" => 2, "pending" => 0 }, runtime.stats)
    assert_nil runtime.stop(500)
  end

  def test_malformed_payload_fails_the_step_not_the_worker
    runtime = native.start_synthetic({ "handlers" => ["ruby_linear_step_1"], "count" => 2,
                                       "context" => { "even_number" => "six" } })
    loop = worker_loop(runtime)
    assert_equal "synthetic feed of 2 steps finished", loop.run
    assert_equal 2, loop.completed
    assert_equal({ "dispatched" => 2, "succeeded" => 0, "failed" => 2, "pending" => 0 }, runtime.stats)
    assert_nil runtime.stop(500)
  end

  def test_malformed_outcome_is_rejected_with_a_message
    runtime = native.start_synthetic({ "handlers" => ["x"], "count" => 1 })
    step = runtime.next_step(5000)
    assert_equal "step", step["type"]
    assert_match(/invalid step outcome JSON/, runtime.complete_step(step["step_id"], "{not json"))
    assert_match(/unknown step id 424242/, runtime.complete_step("424242", '{"status":"success","result":1}'))
    assert_nil runtime.complete_step(step["step_id"], '{"status":"error","message":"later"}')
    assert_equal({ "dispatched" => 1, "succeeded" => 0, "failed" => 1, "pending" => 0 }, runtime.stats)
    assert_nil runtime.stop(500)
  end

  def test_invalid_config_path_is_the_loaders_message
    error = assert_raises(TaskerRuby::StartError) { native.start("/nonexistent/worker.toml", { "ruby" => ["ruby_linear_step_1"] }) }
    assert_match(%r{/nonexistent/worker.toml}, error.message)
  end

  def test_stop_abandons_a_step_still_running_after_the_grace_period
    runtime = native.start_synthetic({ "handlers" => ["ruby_sleep_step"], "count" => 1,
                                       "context" => { "sleep_ms" => 10_000 } })
    lines = Queue.new
    loop = worker_loop(runtime, grace: 0.3, logger: queue_logger(lines))
    Thread.new do
      nil until lines.pop.include?("started: ruby_sleep_step")
      loop.request_stop
    end
    started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
    assert_equal :stopped, loop.run
    elapsed = Process.clock_gettime(Process::CLOCK_MONOTONIC) - started
    assert_operator elapsed, :<, 2.0
    assert_equal 1, loop.abandoned
    assert_equal 1, runtime.stats["pending"]
    assert_nil runtime.stop(500)
  end
end
