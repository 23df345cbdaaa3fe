//! The periodic loop, driven by a fake `Ticker`: sleeps are recorded and return at once,
//! randomness is a fixed sequence, and the ticker itself asks the loop to stop after a
//! given number of sleeps. Shutdown timeouts run on tokio's paused clock.

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{watch, Notify};
use wp_lite::worker::periodic::{self, Ended, TickStats, Ticker, MIN_SLEEP};
use wp_lite::worker::{BoxFuture, Periodic, PeriodicSpec, Worker};

/// What happened, in order: a sleep the loop asked for, or a tick (numbered from 1).
#[derive(Debug, Clone, PartialEq)]
enum Ev {
    Sleep(Duration),
    Tick(u32),
}

type Log = Arc<Mutex<Vec<Ev>>>;

/// Records every requested sleep and returns at once; after `stop_after` sleeps it asks
/// the loop to stop and never returns from that sleep.
struct FakeTicker {
    log: Log,
    randoms: Vec<f64>,
    next_random: AtomicUsize,
    sleeps: AtomicUsize,
    stop_after: usize,
    stop: watch::Sender<bool>,
}

impl FakeTicker {
    fn new(log: &Log, randoms: Vec<f64>, stop_after: usize, stop: &watch::Sender<bool>) -> Self {
        Self {
            log: log.clone(),
            randoms,
            next_random: AtomicUsize::new(0),
            sleeps: AtomicUsize::new(0),
            stop_after,
            stop: stop.clone(),
        }
    }
}

impl Ticker for FakeTicker {
    fn sleep(&self, d: Duration) -> BoxFuture<'_, ()> {
        self.log.lock().unwrap().push(Ev::Sleep(d));
        let n = self.sleeps.fetch_add(1, Ordering::SeqCst) + 1;
        if n >= self.stop_after {
            self.stop.send_replace(true);
            Box::pin(std::future::pending())
        } else {
            Box::pin(async {})
        }
    }

    fn random(&self) -> f64 {
        if self.randoms.is_empty() {
            return 0.5;
        }
        let i = self.next_random.fetch_add(1, Ordering::SeqCst);
        self.randoms[i % self.randoms.len()]
    }
}

/// A periodic worker that logs its ticks, fails the ones listed in `fail_on`, and takes
/// `tick_time` (on tokio's clock) per tick.
struct TestPeriodic {
    spec: PeriodicSpec,
    log: Log,
    ticks: AtomicU32,
    fail_on: Vec<u32>,
    tick_time: Duration,
    tick_started: Notify,
}

impl TestPeriodic {
    fn new(spec: PeriodicSpec, log: &Log) -> Self {
        Self {
            spec,
            log: log.clone(),
            ticks: AtomicU32::new(0),
            fail_on: Vec::new(),
            tick_time: Duration::ZERO,
            tick_started: Notify::new(),
        }
    }
}

impl Worker for TestPeriodic {
    fn name(&self) -> &str {
        "test.periodic"
    }
    fn description(&self) -> &str {
        "a periodic worker of the tests"
    }
}

impl Periodic for TestPeriodic {
    fn spec(&self) -> PeriodicSpec {
        self.spec
    }

    fn tick(&self) -> BoxFuture<'_, anyhow::Result<()>> {
        Box::pin(async move {
            let n = self.ticks.fetch_add(1, Ordering::SeqCst) + 1;
            self.log.lock().unwrap().push(Ev::Tick(n));
            self.tick_started.notify_one();
            if !self.tick_time.is_zero() {
                tokio::time::sleep(self.tick_time).await;
            }
            if self.fail_on.contains(&n) {
                return Err(anyhow::anyhow!("disk full").context(format!("tick {n} failed")));
            }
            Ok(())
        })
    }
}

fn spec(interval_ms: u64, jitter_ms: u64, immediate: bool) -> PeriodicSpec {
    PeriodicSpec {
        interval: Duration::from_millis(interval_ms),
        jitter: Duration::from_millis(jitter_ms),
        immediate,
    }
}

/// What one run of the loop produced.
struct Outcome {
    ended: Ended,
    log: Vec<Ev>,
    ticks: u64,
    errors: u64,
    /// The `failed` flag `on_tick` saw for each tick.
    on_tick: Vec<bool>,
}

/// Runs the loop on `worker` with a fake ticker that stops it after `stop_after` sleeps.
async fn drive(worker: &TestPeriodic, randoms: Vec<f64>, stop_after: usize, once: bool) -> Outcome {
    let (stop, stop_rx) = watch::channel(false);
    let ticker = FakeTicker::new(&worker.log, randoms, stop_after, &stop);
    let stats = TickStats::default();
    let seen = Mutex::new(Vec::new());
    let on_tick = |_took: Duration, failed: bool| seen.lock().unwrap().push(failed);
    let ended = tokio::time::timeout(
        Duration::from_secs(10),
        periodic::run(
            worker,
            &ticker,
            stop_rx,
            Duration::from_secs(5),
            once,
            &stats,
            &on_tick,
        ),
    )
    .await
    .expect("the loop ended");
    let log = worker.log.lock().unwrap().clone();
    Outcome {
        ended,
        log,
        ticks: stats.ticks.load(Ordering::SeqCst),
        errors: stats.errors.load(Ordering::SeqCst),
        on_tick: seen.into_inner().unwrap(),
    }
}

fn sleeps(log: &[Ev]) -> Vec<Duration> {
    log.iter()
        .filter_map(|e| match e {
            Ev::Sleep(d) => Some(*d),
            Ev::Tick(_) => None,
        })
        .collect()
}

fn close_to(d: Duration, expected_ms: f64) -> bool {
    (d.as_secs_f64() * 1000.0 - expected_ms).abs() < 1.0
}

#[tokio::test]
async fn the_interval_separates_the_ticks() {
    let log = Log::default();
    let w = TestPeriodic::new(spec(2_000, 0, false), &log);
    let out = drive(&w, vec![0.9], 4, false).await;
    let s = Duration::from_secs(2);
    assert_eq!(
        out.log,
        vec![
            Ev::Sleep(s),
            Ev::Tick(1),
            Ev::Sleep(s),
            Ev::Tick(2),
            Ev::Sleep(s),
            Ev::Tick(3),
            Ev::Sleep(s)
        ]
    );
    assert_eq!(out.ended, Ended::Stopped);
    assert_eq!((out.ticks, out.errors), (3, 0));
    assert_eq!(out.on_tick, vec![false, false, false]);
}

#[tokio::test]
async fn jitter_stays_within_interval_plus_or_minus_jitter() {
    let log = Log::default();
    let w = TestPeriodic::new(spec(10_000, 3_000, true), &log);
    // The extremes first, then an even spread over [0, 1).
    let mut randoms = vec![0.0, 0.5, 0.999_999];
    randoms.extend((0..200).map(|i| i as f64 / 200.0));
    let out = drive(&w, randoms, 203, false).await;
    let s = sleeps(&out.log);
    assert_eq!(s.len(), 203);
    assert!(
        close_to(s[0], 7_000.0),
        "r = 0 gives interval − jitter: {:?}",
        s[0]
    );
    assert!(
        close_to(s[1], 10_000.0),
        "r = 0.5 gives the interval: {:?}",
        s[1]
    );
    assert!(
        close_to(s[2], 13_000.0),
        "r → 1 gives interval + jitter: {:?}",
        s[2]
    );
    for d in &s {
        assert!(
            *d >= Duration::from_secs(7) && *d <= Duration::from_secs(13),
            "{d:?} is outside 10 s ± 3 s"
        );
    }
    // The jitter really spreads the delays.
    let (min, max) = (s.iter().min().unwrap(), s.iter().max().unwrap());
    assert!(*max - *min > Duration::from_secs(5), "{min:?}..{max:?}");
    // Every sleep is followed by a tick (the loop went on each time) but the last.
    assert_eq!(out.ticks, 203);
}

#[tokio::test]
async fn jitter_never_takes_a_delay_below_the_floor() {
    let log = Log::default();
    // 1 s ± 5 s: half the band is below zero.
    let w = TestPeriodic::new(spec(1_000, 5_000, true), &log);
    let out = drive(&w, vec![0.0, 0.1, 0.5, 0.9], 4, false).await;
    let s = sleeps(&out.log);
    assert_eq!(s.len(), 4);
    assert_eq!(s[0], MIN_SLEEP, "1 − 5 s is floored");
    assert_eq!(s[1], MIN_SLEEP, "1 − 4 s is floored");
    assert!(close_to(s[2], 1_000.0), "{:?}", s[2]);
    assert!(close_to(s[3], 5_000.0), "{:?}", s[3]);
    assert_eq!(MIN_SLEEP, Duration::from_millis(100));
}

#[tokio::test]
async fn an_interval_below_the_floor_is_floored() {
    for (interval_ms, jitter_ms) in [(0, 0), (10, 0), (99, 0), (50, 20)] {
        let log = Log::default();
        let w = TestPeriodic::new(spec(interval_ms, jitter_ms, false), &log);
        let out = drive(&w, vec![0.0, 0.5, 0.999], 6, false).await;
        let s = sleeps(&out.log);
        assert_eq!(s.len(), 6);
        for d in s {
            assert!(
                d >= MIN_SLEEP,
                "interval {interval_ms} ms ± {jitter_ms} ms slept only {d:?}"
            );
            assert!(
                d <= MIN_SLEEP + Duration::from_millis(jitter_ms),
                "interval {interval_ms} ms ± {jitter_ms} ms slept {d:?}"
            );
        }
        assert_eq!(out.ticks, 5);
    }
}

#[tokio::test]
async fn the_immediate_flag_decides_whether_the_first_tick_waits() {
    let log = Log::default();
    let w = TestPeriodic::new(spec(5_000, 0, true), &log);
    let out = drive(&w, vec![], 2, false).await;
    let s = Duration::from_secs(5);
    assert_eq!(
        out.log,
        vec![Ev::Tick(1), Ev::Sleep(s), Ev::Tick(2), Ev::Sleep(s)]
    );

    let log = Log::default();
    let w = TestPeriodic::new(spec(5_000, 0, false), &log);
    let out = drive(&w, vec![], 2, false).await;
    assert_eq!(out.log, vec![Ev::Sleep(s), Ev::Tick(1), Ev::Sleep(s)]);

    // Stopped during the first sleep: no tick at all.
    let log = Log::default();
    let w = TestPeriodic::new(spec(5_000, 0, false), &log);
    let out = drive(&w, vec![], 1, false).await;
    assert_eq!(out.log, vec![Ev::Sleep(s)]);
    assert_eq!(out.ended, Ended::Stopped);
    assert_eq!(out.ticks, 0);
}

#[tokio::test]
async fn a_failing_tick_is_counted_and_the_loop_goes_on() {
    let log = Log::default();
    let mut w = TestPeriodic::new(spec(1_000, 0, true), &log);
    w.fail_on = vec![2];
    let out = drive(&w, vec![], 4, false).await;
    let s = Duration::from_secs(1);
    assert_eq!(
        out.log,
        vec![
            Ev::Tick(1),
            Ev::Sleep(s),
            Ev::Tick(2),
            Ev::Sleep(s),
            Ev::Tick(3),
            Ev::Sleep(s),
            Ev::Tick(4),
            Ev::Sleep(s)
        ]
    );
    assert_eq!(out.ended, Ended::Stopped);
    assert_eq!((out.ticks, out.errors), (4, 1));
    assert_eq!(out.on_tick, vec![false, true, false, false]);

    // Every tick failing does not end the loop either.
    let log = Log::default();
    let mut w = TestPeriodic::new(spec(1_000, 0, false), &log);
    w.fail_on = (1..=10).collect();
    let out = drive(&w, vec![], 6, false).await;
    assert_eq!((out.ticks, out.errors), (5, 5));
    assert_eq!(out.ended, Ended::Stopped);
}

#[tokio::test]
async fn once_runs_exactly_one_tick_at_once() {
    // Not immediate, yet `once` ticks at once and sleeps not at all.
    let log = Log::default();
    let w = TestPeriodic::new(spec(60_000, 0, false), &log);
    let out = drive(&w, vec![], usize::MAX, true).await;
    assert_eq!(out.ended, Ended::Once);
    assert_eq!(out.log, vec![Ev::Tick(1)]);
    assert_eq!((out.ticks, out.errors), (1, 0));

    // A failing tick under `once` is still one tick, counted as an error.
    let log = Log::default();
    let mut w = TestPeriodic::new(spec(60_000, 0, true), &log);
    w.fail_on = vec![1];
    let out = drive(&w, vec![], usize::MAX, true).await;
    assert_eq!(out.ended, Ended::Once);
    assert_eq!(out.log, vec![Ev::Tick(1)]);
    assert_eq!((out.ticks, out.errors), (1, 1));
}

/// Starts the loop with an immediate tick of `tick_time`, asks it to stop as soon as the
/// tick has started, and returns how it ended and how long the stop took (tokio's clock).
async fn stop_during_tick(
    tick_time: Duration,
    shutdown_timeout: Duration,
) -> (Ended, Duration, Vec<Ev>, u64) {
    let log = Log::default();
    let mut w = TestPeriodic::new(spec(1_000, 0, true), &log);
    w.tick_time = tick_time;
    let (stop, stop_rx) = watch::channel(false);
    let ticker = FakeTicker::new(&log, vec![], usize::MAX, &stop);
    let stats = TickStats::default();
    let on_tick = |_: Duration, _: bool| {};
    let run = periodic::run(
        &w,
        &ticker,
        stop_rx,
        shutdown_timeout,
        false,
        &stats,
        &on_tick,
    );
    let stopper = async {
        w.tick_started.notified().await;
        let at = tokio::time::Instant::now();
        stop.send_replace(true);
        at
    };
    let (ended, asked_at) = tokio::join!(run, stopper);
    let took = tokio::time::Instant::now() - asked_at;
    let log = log.lock().unwrap().clone();
    (ended, took, log, stats.ticks.load(Ordering::SeqCst))
}

#[tokio::test(start_paused = true)]
async fn a_tick_longer_than_the_shutdown_timeout_is_abandoned_when_the_timeout_ends() {
    let (ended, took, log, _) =
        stop_during_tick(Duration::from_secs(3600), Duration::from_secs(5)).await;
    assert_eq!(ended, Ended::Abandoned);
    assert!(
        took >= Duration::from_secs(5) && took < Duration::from_secs(6),
        "stop took {took:?}; the shutdown timeout is 5 s"
    );
    assert_eq!(log, vec![Ev::Tick(1)], "no tick after the stop");
}

#[tokio::test(start_paused = true)]
async fn a_tick_in_progress_may_finish_within_the_shutdown_timeout() {
    let (ended, took, log, ticks) =
        stop_during_tick(Duration::from_secs(2), Duration::from_secs(5)).await;
    assert_eq!(ended, Ended::Stopped);
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(5),
        "stop took {took:?}; the tick needed 2 s"
    );
    assert_eq!(
        log,
        vec![Ev::Tick(1)],
        "no tick after the stop, and no sleep"
    );
    assert_eq!(ticks, 1, "the finished tick is counted");
}
