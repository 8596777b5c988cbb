//! Runs the Ruby worker's minitest suite (`workers/ruby/test/run_all.rb`) against the
//! library cargo just built, so `cargo xtask test` covers the Ruby side too.

mod support;

#[test]
fn ruby_minitest_suite_passes() {
    let output = support::ruby()
        .arg(support::ruby_dir().join("test/run_all.rb"))
        .output()
        .expect("running ruby");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the Ruby tests failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains(" 0 failures, 0 errors"), "unexpected minitest summary:\n{stdout}");
}
