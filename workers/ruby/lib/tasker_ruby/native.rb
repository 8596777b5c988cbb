# frozen_string_literal: true

require "fiddle"
require "json"
require "rbconfig"

module TaskerRuby
  # The native library is not built or not where we look.
  class LibraryMissing < StandardError; end

  # The ext refused to start (invalid config, database unreachable, ...): the loader's message.
  class StartError < StandardError; end

  # Fiddle binding of the `tasker-worker-ruby-ext` C ABI (see workers/ruby/ext/src/lib.rs for
  # the contract). Strings returned by the library are copied into Ruby strings and freed
  # with `tasker_ruby_free_string` right away; the handle is freed by `stop`.
  class Native
    PACKAGE = "tasker-worker-ruby-ext"
    BUILD_COMMAND = "cargo build -p #{PACKAGE}"
    PATH_VARIABLE = "TASKER_RUBY_EXT_PATH"
    FILE_NAME = RbConfig::CONFIG["host_os"].include?("darwin") ? "libtasker_worker_ruby_ext.dylib" : "libtasker_worker_ruby_ext.so"
    WORKSPACE_ROOT = File.expand_path("../../../..", __dir__)

    # The library to load: `TASKER_RUBY_EXT_PATH` if set, else the newest build of the
    # workspace's target/debug or target/release (honouring CARGO_TARGET_DIR).
    def self.locate(env = ENV)
      explicit = env[PATH_VARIABLE].to_s
      unless explicit.empty?
        path = File.expand_path(explicit)
        return path if File.file?(path)

        raise LibraryMissing, "#{PATH_VARIABLE}=#{path} does not exist: build it with `#{BUILD_COMMAND}` or fix the variable"
      end

      target = File.expand_path(env["CARGO_TARGET_DIR"].to_s.empty? ? "target" : env["CARGO_TARGET_DIR"], WORKSPACE_ROOT)
      candidates = %w[debug release].map { |profile| File.join(target, profile, FILE_NAME) }
      found = candidates.select { |path| File.file?(path) }
      return found.max_by { |path| File.mtime(path) } unless found.empty?

      raise LibraryMissing,
            "the Ruby worker's native library #{FILE_NAME} is not built (looked in #{candidates.join(', ')}): " \
            "run `#{BUILD_COMMAND}` in #{WORKSPACE_ROOT}, or set #{PATH_VARIABLE}"
    end

    attr_reader :path

    def initialize(path)
      @path = path
      @library = Fiddle.dlopen(path)
      @start = function("tasker_ruby_start", [Fiddle::TYPE_CONST_STRING, Fiddle::TYPE_CONST_STRING, Fiddle::TYPE_VOIDP])
      @start_synthetic = function("tasker_ruby_start_synthetic", [Fiddle::TYPE_CONST_STRING, Fiddle::TYPE_VOIDP])
      @next_step = function("tasker_ruby_next_step", [Fiddle::TYPE_VOIDP, -Fiddle::TYPE_INT64_T])
      @complete_step = function("tasker_ruby_complete_step",
                                [Fiddle::TYPE_VOIDP, Fiddle::TYPE_CONST_STRING, Fiddle::TYPE_CONST_STRING])
      @stats = function("tasker_ruby_stats", [Fiddle::TYPE_VOIDP])
      @stop = function("tasker_ruby_stop", [Fiddle::TYPE_VOIDP, -Fiddle::TYPE_INT64_T])
      @free_string = function("tasker_ruby_free_string", [Fiddle::TYPE_VOIDP], Fiddle::TYPE_VOID)
    rescue Fiddle::DLError => e
      raise LibraryMissing, "cannot load #{path}: #{e.message} (rebuild it with `#{BUILD_COMMAND}`)"
    end

    # Starts the worker runtime for `{namespace => [handler names]}`; raises StartError with
    # the loader's (or the worker's) message.
    def start(config_path, handlers_by_namespace)
      handlers = JSON.generate(handlers_by_namespace)
      Runtime.new(self, with_error_out { |error_out| @start.call(config_path, handlers, error_out) })
    end

    # Starts a handle fed with generated steps (no database), for soak tests.
    def start_synthetic(spec)
      Runtime.new(self, with_error_out { |error_out| @start_synthetic.call(JSON.generate(spec), error_out) })
    end

    # Raw calls used by Runtime; each returns a Ruby String (or nil) and frees the C string.
    def next_step(handle, timeout_ms)
      take_string(@next_step.call(handle, timeout_ms))
    end

    def complete_step(handle, step_id, outcome_json)
      take_string(@complete_step.call(handle, step_id, outcome_json))
    end

    def stats(handle)
      take_string(@stats.call(handle))
    end

    def stop(handle, timeout_ms)
      take_string(@stop.call(handle, timeout_ms))
    end

    private

    def function(name, arguments, result = Fiddle::TYPE_VOIDP)
      Fiddle::Function.new(@library[name], arguments, result)
    end

    def with_error_out
      error_out = Fiddle::Pointer.malloc(Fiddle::SIZEOF_VOIDP, Fiddle::RUBY_FREE)
      error_out[0, Fiddle::SIZEOF_VOIDP] = "\0" * Fiddle::SIZEOF_VOIDP
      handle = yield error_out
      return handle unless handle.null?

      raise StartError, take_string(error_out.ptr) || "the native library returned no handle and no error"
    end

    def take_string(pointer)
      return nil if pointer.null?

      pointer.to_s.force_encoding(Encoding::UTF_8)
    ensure
      @free_string.call(pointer) unless pointer.nil? || pointer.null?
    end
  end

  # A started runtime (real or synthetic). Not thread-safe: use it from one thread.
  class Runtime
    def initialize(native, handle)
      @native = native
      @handle = handle
    end

    # The next step `{"type"=>"step","step_id"=>..,"handler"=>..,"payload"=>..}`, a
    # `{"type"=>"stopped","reason"=>..}` document once the runtime has ended, or nil on timeout.
    def next_step(timeout_ms)
      text = @native.next_step(live_handle, timeout_ms)
      text && JSON.parse(text)
    end

    # Returns nil, or the ext's message when it rejects the outcome.
    def complete_step(step_id, outcome_json)
      @native.complete_step(live_handle, step_id, outcome_json)
    end

    def stats
      JSON.parse(@native.stats(live_handle))
    end

    # Frees the handle; returns nil or a message about an unclean shutdown. Idempotent.
    def stop(timeout_ms)
      return nil if @handle.nil?

      handle = @handle
      @handle = nil
      @native.stop(handle, timeout_ms)
    end

    def stopped?
      @handle.nil?
    end

    private

    def live_handle
      @handle or raise "the runtime was stopped"
    end
  end
end
