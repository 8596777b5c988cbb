# frozen_string_literal: true

# Runs every Ruby test: `ruby workers/ruby/test/run_all.rb` (needs the native library:
# `cargo build -p tasker-worker-ruby-ext`).
Dir[File.join(__dir__, "*_test.rb")].sort.each { |file| require file }
