//! Stopping: the one signal every long-running loop (workers, the metrics flusher, the
//! server) waits on. A leaf module, so nothing that stops has to depend on the workers.

/// Completes once `stop` is true (or its sender is gone).
pub async fn stopped(stop: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
