# frozen_string_literal: true

require_relative "test_helper"

class SettingsTest < Minitest::Test
  def test_database_password_is_redacted
    redact = ->(url) { TaskerRuby::Settings.redact_url(url) }
    assert_equal "postgresql://tasker:***@localhost:5432/tasker", redact.call("postgresql://tasker:s3cr:et@localhost:5432/tasker")
    assert_equal "postgres://u@h/db", redact.call("postgres://u@h/db")
    assert_equal "postgres://h/db?user=u&password=***&sslmode=disable",
                 redact.call("postgres://h/db?user=u&password=hunter2&sslmode=disable")
  end

  def test_summary_never_shows_the_password
    settings = TaskerRuby::Settings.new("DATABASE_URL" => "postgresql://a:topsecret@h/db", "TASKER_ENV" => "test")
    summary = settings.summary
    refute(summary.any? { |line| line.include?("topsecret") })
    assert_includes summary, "DATABASE_URL=postgresql://a:***@h/db"
    assert_includes summary, "TASKER_INSTANCE_ID=(unset)"
  end

  def test_missing_config_path_says_what_to_do
    error = assert_raises(TaskerRuby::Settings::Invalid) { TaskerRuby::Settings.new({}).config_path }
    assert_match(/TASKER_CONFIG_PATH is not set/, error.message)
  end
end
