//! Benchmark (filled in below).
#[derive(clap::Args, Debug)]
pub struct BenchArgs {}
pub fn run(_: BenchArgs) -> anyhow::Result<()> {
    Ok(())
}
