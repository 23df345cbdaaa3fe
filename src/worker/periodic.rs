//! Periodic workers: a tick every `interval ± jitter`, an optional immediate first tick,
//! floors on both, errors logged and counted while the loop goes on, and a tick in
//! progress given the shutdown timeout to finish. Sleeping and randomness come from a
//! [`Ticker`] so tests can drive the loop without waiting.

use super::{BoxFuture, Periodic};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{watch, Notify};

/// No sleep between ticks is shorter than this.
pub const MIN_SLEEP: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PeriodicSpec {
    pub interval: Duration,
    pub jitter: Duration,
    pub immediate: bool,
}

impl PeriodicSpec {
    /// The delay before the next tick for a random `r` in [0, 1): `interval` (at least
    /// 0.1 s) plus a uniform offset in ±`jitter`, never below 0.1 s.
    pub fn next_delay(&self, r: f64) -> Duration {
        let base = self.interval.max(MIN_SLEEP).as_secs_f64();
        let j = self.jitter.as_secs_f64();
        let d = base + (2.0 * r.clamp(0.0, 1.0) - 1.0) * j;
        Duration::from_secs_f64(d.max(MIN_SLEEP.as_secs_f64()))
    }
}

/// Where a periodic loop gets its sleeps and its randomness.
pub trait Ticker: Send + Sync {
    fn sleep(&self, d: Duration) -> BoxFuture<'_, ()>;
    /// A random number in [0, 1).
    fn random(&self) -> f64;
}

/// Real time.
pub struct RealTicker;

impl Ticker for RealTicker {
    fn sleep(&self, d: Duration) -> BoxFuture<'_, ()> {
        Box::pin(tokio::time::sleep(d))
    }
    fn random(&self) -> f64 {
        rand::random::<f64>()
    }
}

/// Counters of one periodic loop.
#[derive(Debug, Default)]
pub struct TickStats {
    pub ticks: AtomicU64,
    pub errors: AtomicU64,
}

/// How a loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Asked to stop, nothing left running.
    Stopped,
    /// `once`: one tick done.
    Once,
    /// A tick did not finish within the shutdown timeout and was abandoned.
    Abandoned,
}

/// Called after every tick with how long it took and whether it failed.
pub type OnTick<'a> = &'a (dyn Fn(Duration, bool) + Send + Sync);

/// Sleeps `d` (ended early by a wake-up); returns true when asked to stop.
async fn sleep_or_stop(
    ticker: &dyn Ticker,
    d: Duration,
    wake: Option<&Notify>,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    let woken = async {
        match wake {
            Some(n) => n.notified().await,
            None => std::future::pending().await,
        }
    };
    let interrupted = tokio::select! {
        _ = ticker.sleep(d) => false,
        _ = woken => false,
        _ = super::stopped(stop) => true,
    };
    interrupted || *stop.borrow()
}

/// Runs the loop until `stop` turns true (or one tick, with `once`).
pub async fn run(
    worker: &dyn Periodic,
    ticker: &dyn Ticker,
    mut stop: watch::Receiver<bool>,
    shutdown_timeout: Duration,
    once: bool,
    stats: &TickStats,
    on_tick: OnTick<'_>,
) -> Ended {
    let spec = worker.spec();
    let wake = worker.wake();
    if !once
        && !spec.immediate
        && sleep_or_stop(
            ticker,
            spec.next_delay(ticker.random()),
            wake.as_deref(),
            &mut stop,
        )
        .await
    {
        return Ended::Stopped;
    }
    loop {
        if *stop.borrow() {
            return Ended::Stopped;
        }
        let started = Instant::now();
        let tick = worker.tick();
        tokio::pin!(tick);
        let (result, stopping) = tokio::select! {
            r = &mut tick => (Some(r), false),
            _ = super::stopped(&mut stop) => {
                tracing::info!(worker = worker.name(), timeout = ?shutdown_timeout, "stop requested; letting the tick in progress finish");
                (tokio::time::timeout(shutdown_timeout, &mut tick).await.ok(), true)
            }
        };
        let Some(result) = result else {
            tracing::warn!(
                worker = worker.name(),
                "the tick did not finish within the shutdown timeout; abandoned"
            );
            return Ended::Abandoned;
        };
        stats.ticks.fetch_add(1, Ordering::Relaxed);
        let failed = result.is_err();
        if let Err(e) = result {
            let n = stats.errors.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::error!(
                worker = worker.name(),
                error = format!("{e:#}"),
                tick_errors = n,
                "tick failed; continuing"
            );
        }
        on_tick(started.elapsed(), failed);
        if once {
            return Ended::Once;
        }
        if stopping
            || sleep_or_stop(
                ticker,
                spec.next_delay(ticker.random()),
                wake.as_deref(),
                &mut stop,
            )
            .await
        {
            return Ended::Stopped;
        }
    }
}
