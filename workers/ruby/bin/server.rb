#!/usr/bin/env -S ruby --disable-gems
# frozen_string_literal: true

# The Ruby worker: runs the `ruby` namespace's step handlers on the Rust worker runtime.
#
#   TASKER_CONFIG_PATH=<abs>/config/tasker/generated/worker-test.toml \
#   DATABASE_URL=postgresql://... TASKER_WEB_BIND_ADDRESS=127.0.0.1:8082 \
#   ruby workers/ruby/bin/server.rb            # or: bundle exec bin/server.rb
#
# Takes no flags: configuration is the environment plus the config file. The native library
# comes from TASKER_RUBY_EXT_PATH or the workspace's target/{debug,release}
# (`cargo build -p tasker-worker-ruby-ext`). INT/TERM stop it within 2 s, also while starting.
#
# `--disable-gems` (the line above; `ruby bin/server.rb` reads it too): the worker needs only
# the standard library, and loading RubyGems was two thirds of Ruby's boot (~45 ms).

# The traps come first, so that a signal while loading is a stop request, not a death.
stop = { requested: false, loop: nil }
%w[INT TERM].each do |signal|
  Signal.trap(signal) do
    stop[:requested] = true
    stop[:loop]&.request_stop
  end
end

require "logger"
require_relative "../lib/tasker_ruby"

# Seconds a running step may take to finish after INT/TERM, and the runtime's stop budget:
# together well inside the 2 s shutdown promise.
STEP_GRACE_SECONDS = 1.0
STOP_BUDGET_MS = 700

$stdout.sync = true
logger = Logger.new($stdout, progname: "ruby-worker")
logger.formatter = proc do |severity, time, progname, message|
  "#{time.utc.strftime('%Y-%m-%dT%H:%M:%S.%3NZ')} #{severity} #{progname}: #{message}\n"
end

fail_with = lambda do |message, code|
  logger.error(message)
  exit(code)
end

settings = TaskerRuby::Settings.new
begin
  config_path = settings.config_path
rescue TaskerRuby::Settings::Invalid => e
  fail_with.call(e.message, 2)
end

logger.info("starting (pid #{Process.pid}, ruby #{RUBY_VERSION})")
settings.summary.each { |line| logger.info("config: #{line}") }

registry = TaskerRuby::Handlers.registry
logger.info("handlers (namespace #{TaskerRuby::Handlers::NAMESPACE}): #{registry.names.join(', ')}")

begin
  library = TaskerRuby::Native.locate
  native = TaskerRuby::Native.new(library)
rescue TaskerRuby::LibraryMissing => e
  fail_with.call(e.message, 2)
end
logger.info("native library: #{library}")

# The library call cannot be interrupted (it connects, creates the queues, binds), so it
# runs on its own thread while this one watches for a stop request.
starting = Thread.new { native.start(config_path, { TaskerRuby::Handlers::NAMESPACE => registry.names }) }
starting.report_on_exception = false
begin
  until starting.join(0.02) # re-raises the start's StartError
    next unless stop[:requested]

    # Leave at once, without waiting for the library call (`exit` would wait for that
    # thread). Nothing is lost: a step claimed in the last instant reappears after its
    # visibility timeout.
    logger.info("stopped during startup")
    exit!(0)
  end
  runtime = starting.value
rescue TaskerRuby::StartError => e
  fail_with.call("cannot start the worker runtime: #{e.message}", 2)
end
logger.info("ready: health on #{ENV.fetch('TASKER_WEB_BIND_ADDRESS', '(config default)')}")

worker_loop = TaskerRuby::WorkerLoop.new(runtime: runtime, runner: TaskerRuby::StepRunner.new(registry),
                                         logger: logger, grace: STEP_GRACE_SECONDS)
stop[:loop] = worker_loop
worker_loop.request_stop if stop[:requested]

outcome = worker_loop.run
logger.info(outcome == :stopped ? "stopping on signal" : "the runtime ended: #{outcome}")
problem = runtime.stop(STOP_BUDGET_MS)
logger.warn("unclean runtime shutdown: #{problem}") if problem
logger.info("stopped: #{worker_loop.completed} steps completed, #{worker_loop.abandoned} abandoned")
exit(outcome == :stopped ? 0 : 1)
