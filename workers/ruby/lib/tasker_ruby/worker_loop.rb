# frozen_string_literal: true

module TaskerRuby
  # Takes steps from the runtime, runs their handler on a thread, completes them.
  #
  # Shutdown: `request_stop` (from a signal trap) ends the loop. A step still running then
  # gets `grace` seconds to finish and be completed; past that it is abandoned without a
  # result, so its queue message reappears after the visibility timeout for another worker.
  class WorkerLoop
    # How long one wait for a step lasts: a stop request is seen within it.
    POLL_MS = 20

    attr_reader :completed, :abandoned

    def initialize(runtime:, runner:, logger:, grace: 1.0)
      @runtime = runtime
      @runner = runner
      @logger = logger
      @grace = grace
      @stop_requested_at = nil
      @completed = 0
      @abandoned = 0
    end

    # Safe to call from a trap context: sets a timestamp, nothing else.
    def request_stop
      @stop_requested_at ||= Process.clock_gettime(Process::CLOCK_MONOTONIC)
    end

    def stop_requested?
      !@stop_requested_at.nil?
    end

    # Runs until a stop is requested or the runtime ends. Returns :stopped or the reason
    # string the runtime gave for ending.
    def run
      until stop_requested?
        step = @runtime.next_step(POLL_MS)
        next if step.nil?
        return step["reason"] if step["type"] == "stopped"

        execute(step)
      end
      :stopped
    end

    private

    def execute(step)
      step_id = step["step_id"]
      handler = step["handler"]
      @logger.info("step #{step_id} started: #{handler}")
      outcome = run_with_grace(handler, step["payload"])
      if outcome.nil?
        @abandoned += 1
        @logger.warn("step #{step_id} abandoned at shutdown: #{handler} still running")
        return
      end

      complete(step_id, handler, outcome)
    end

    def complete(step_id, handler, outcome)
      rejection = @runtime.complete_step(step_id, StepRunner.to_json(outcome))
      if rejection
        # The ext could not use the outcome: report that as the step's error instead.
        @logger.error("step #{step_id} outcome rejected: #{rejection}")
        fallback = StepRunner.failure_outcome("TaskerRuby::OutcomeRejected", rejection)
        rejection = @runtime.complete_step(step_id, JSON.generate(fallback))
        @logger.error("step #{step_id} could not be completed: #{rejection}") if rejection
      else
        @completed += 1
        status = outcome["status"] == "success" ? "completed" : "failed: #{outcome['message']}"
        @logger.info("step #{step_id} #{status} (#{handler})")
      end
    end

    # The handler runs on its own thread so that a stop request can stop waiting for it.
    def run_with_grace(handler, payload)
      worker = Thread.new { @runner.run(handler, payload) }
      worker.report_on_exception = false
      loop do
        return worker.value if worker.join(0.05)
        next unless stop_requested?
        next if Process.clock_gettime(Process::CLOCK_MONOTONIC) - @stop_requested_at < @grace

        worker.kill
        return nil
      end
    end
  end
end
