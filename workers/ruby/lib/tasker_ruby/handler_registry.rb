# frozen_string_literal: true

module TaskerRuby
  # Handler name -> handler object (anything with `call(step) -> Hash`). The names are
  # registered with the Rust runtime, which serves the namespaces whose templates use them.
  class HandlerRegistry
    def initialize
      @handlers = {}
    end

    def register(name, handler)
      name = name.to_s
      raise ArgumentError, "handler #{name} is already registered" if @handlers.key?(name)
      raise ArgumentError, "handler #{name} does not respond to call" unless handler.respond_to?(:call)

      @handlers[name] = handler
      self
    end

    def names
      @handlers.keys.sort
    end

    def fetch(name)
      @handlers.fetch(name) { raise KeyError, "no Ruby handler registered as #{name.inspect}" }
    end
  end
end
