//! `wp-lite bench` (filled in below).
pub async fn run(_args: crate::cli::BenchArgs) -> anyhow::Result<()> {
    anyhow::bail!("bench: not yet")
}
