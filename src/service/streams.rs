//! The real-time inbox: one hub per process that holds the open streams by user, and one
//! fan-in task that learns of new inbox items from the store in batches and hands each to
//! its user's streams.
//!
//! Whoever delivered an item — this process's broadcast worker, `notifications.send`, a
//! direct send, a `wp-lite run` process, another node — the fan-in finds it the same way:
//! it keeps the highest item sequence number it has read (its cursor) and, when woken,
//! reads the items after it that belong to the users with open streams, in one query for
//! all of them. It is woken at once by deliveries in this process ([`InboxSignal`]), on
//! PostgreSQL by every node's NOTIFY (one per committed chunk, carrying the chunk's range
//! of sequence numbers, which also covers items that committed out of order), and
//! otherwise polls every [`POLL`]. A broadcast to a million users is therefore read in a
//! few batches, not a million wake-ups, and costs nothing per user who is not listening.
//!
//! Unread counts are pushed after items arrive, at once after a read or read-all made in
//! this process, and every [`UNREAD_REFRESH`] for every listening user (which is how reads
//! made through another process, and retention, reach a stream).
//!
//! A stream's buffer is bounded ([`BUFFER`] events): when a client reads too slowly the
//! events that do not fit are dropped and the stream sends a fresh `unread` count once it
//! has caught up, so memory never grows with a client that does not read.

use super::Result;
use crate::domain::notify::{FeedItem, UserId};
use crate::domain::Ts;
use crate::storage::Db;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, watch, Notify};

/// How often the fan-in looks at the store when nothing woke it.
pub const POLL: Duration = Duration::from_millis(250);
/// After a busy round the fan-in reads the store at most this often (deliveries in between
/// are one batch).
pub const ROUND: Duration = Duration::from_millis(50);
/// How far back a rescan reads (by the cursors the fan-in had then).
pub const RESCAN: Duration = Duration::from_secs(30);
/// Items pushed in one round that make the next round wait for ROUND.
const BUSY: usize = 100;
/// How often every listening user's unread count is read again.
pub const UNREAD_REFRESH: Duration = Duration::from_secs(5);
/// Events one stream holds before it drops and resynchronises.
pub const BUFFER: usize = 64;
/// Open streams per process unless configured (`--max-streams`).
pub const MAX_STREAMS: usize = 10_000;
/// Open streams per user.
pub const PER_USER: usize = 5;
/// Items the fan-in reads per query.
const BATCH: usize = 2000;
/// Sequence numbers remembered to drop an item read twice (ranges may overlap).
const RECENT: usize = 200_000;

/// What a stream is sent.
#[derive(Debug, Clone)]
pub enum Push {
    Item(Box<FeedItem>),
    Unread(i64),
}

/// Why a stream was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// `--max-streams` are open in this process.
    Process,
    /// The user has [`PER_USER`] streams open.
    User,
}

impl Refused {
    pub fn message(self) -> &'static str {
        match self {
            Refused::Process => "too many open streams in this process; try again later",
            Refused::User => "this user has too many open streams; close one first",
        }
    }
}

/// The hub's metrics (registered by the process's telemetry).
#[derive(Clone)]
pub struct StreamMetrics {
    pub open: prometheus::IntGauge,
    pub pushed: prometheus::IntCounter,
    pub lag: prometheus::Histogram,
}

struct Slot {
    id: u64,
    tx: mpsc::Sender<Push>,
    lagged: Arc<AtomicBool>,
}

#[derive(Default)]
struct UserStreams {
    slots: Vec<Slot>,
    /// The last unread count pushed to this user's streams (the periodic refresh sends
    /// only changes).
    unread: Option<i64>,
}

#[derive(Default)]
struct Pending {
    /// Ranges of sequence numbers committed somewhere (PostgreSQL NOTIFY).
    ranges: Vec<(i64, i64)>,
    /// Users whose unread count changed here.
    unread: HashSet<UserId>,
    /// Read again what committed lately (notifications may have been lost).
    rescan: bool,
}

/// Ranges kept before they are merged into one.
const MAX_RANGES: usize = 64;

impl Pending {
    fn add_range(&mut self, lo: i64, hi: i64) {
        self.ranges.push((lo, hi));
        if self.ranges.len() > MAX_RANGES {
            let lo = self.ranges.iter().map(|r| r.0).min().unwrap_or(lo);
            let hi = self.ranges.iter().map(|r| r.1).max().unwrap_or(hi);
            self.ranges = vec![(lo, hi)];
        }
    }

    /// Puts back work that a failed round took.
    fn restore(&mut self, ranges: Vec<(i64, i64)>, unread: HashSet<UserId>, rescan: bool) {
        for (lo, hi) in ranges {
            self.add_range(lo, hi);
        }
        self.unread.extend(unread);
        self.rescan |= rescan;
    }
}

/// The open streams of this process, by user.
pub struct Hub {
    users: Mutex<HashMap<UserId, UserStreams>>,
    pending: Mutex<Pending>,
    open: AtomicU64,
    next: AtomicU64,
    max_streams: usize,
    wake: Notify,
    metrics: StreamMetrics,
    stop: watch::Receiver<bool>,
}

impl Hub {
    pub fn new(max_streams: usize, metrics: StreamMetrics, stop: watch::Receiver<bool>) -> Self {
        Self {
            users: Mutex::default(),
            pending: Mutex::default(),
            open: AtomicU64::new(0),
            next: AtomicU64::new(1),
            max_streams,
            wake: Notify::new(),
            metrics,
            stop,
        }
    }

    /// Opens a stream for `user`, within the limits. Register before reading what the
    /// client should see first, so that nothing committed in between is missed.
    pub fn subscribe(self: &Arc<Self>, user: &UserId) -> Result<Subscription, Refused> {
        let (tx, rx) = mpsc::channel(BUFFER);
        let lagged = Arc::new(AtomicBool::new(false));
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        {
            let mut users = self.users.lock().expect("hub lock");
            if self.open.load(Ordering::SeqCst) as usize >= self.max_streams {
                return Err(Refused::Process);
            }
            let entry = users.entry(user.clone()).or_default();
            if entry.slots.len() >= PER_USER {
                return Err(Refused::User);
            }
            entry.slots.push(Slot {
                id,
                tx,
                lagged: lagged.clone(),
            });
            self.open.fetch_add(1, Ordering::SeqCst);
        }
        self.metrics.open.inc();
        Ok(Subscription {
            hub: self.clone(),
            user: user.clone(),
            id,
            rx,
            lagged,
            stop: self.stop.clone(),
        })
    }

    fn unsubscribe(&self, user: &UserId, id: u64) {
        let mut users = self.users.lock().expect("hub lock");
        if let Some(entry) = users.get_mut(user) {
            if let Some(i) = entry.slots.iter().position(|s| s.id == id) {
                entry.slots.swap_remove(i);
                self.open.fetch_sub(1, Ordering::SeqCst);
                self.metrics.open.dec();
            }
            if entry.slots.is_empty() {
                users.remove(user);
            }
        }
    }

    /// Open streams in this process.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst) as usize
    }

    /// New items may be in the store.
    pub fn items_committed(&self) {
        self.wake.notify_one();
    }

    /// Items `lo..=hi` were committed somewhere (another node's NOTIFY, or this one's).
    pub fn range_committed(&self, lo: i64, hi: i64) {
        self.pending.lock().expect("hub lock").add_range(lo, hi);
        self.wake.notify_one();
    }

    /// Notifications may have been missed (the store's listener reconnected): the fan-in
    /// reads again what committed in the last [`RESCAN`].
    pub fn rescan(&self) {
        self.pending.lock().expect("hub lock").rescan = true;
        self.wake.notify_one();
    }

    /// The user's unread count changed in this process.
    pub fn unread_changed(&self, user: &UserId) {
        if !self.users.lock().expect("hub lock").contains_key(user) {
            return;
        }
        self.pending
            .lock()
            .expect("hub lock")
            .unread
            .insert(user.clone());
        self.wake.notify_one();
    }

    fn listening(&self) -> Vec<UserId> {
        self.users
            .lock()
            .expect("hub lock")
            .keys()
            .cloned()
            .collect()
    }

    fn take_pending(&self) -> Pending {
        std::mem::take(&mut *self.pending.lock().expect("hub lock"))
    }

    /// Hands `push` to every stream of `user`; a full stream drops it and resynchronises.
    fn send(&self, user: &UserId, push: &Push) -> usize {
        let users = self.users.lock().expect("hub lock");
        let Some(entry) = users.get(user) else {
            return 0;
        };
        let mut sent = 0;
        for slot in &entry.slots {
            match slot.tx.try_send(push.clone()) {
                Ok(()) => sent += 1,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    slot.lagged.store(true, Ordering::SeqCst)
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {}
            }
        }
        sent
    }

    /// Pushes an unread count, unless `only_changes` and it is the last one pushed.
    fn send_unread(&self, user: &UserId, unread: i64, only_changes: bool) {
        {
            let mut users = self.users.lock().expect("hub lock");
            let Some(entry) = users.get_mut(user) else {
                return;
            };
            if only_changes && entry.unread == Some(unread) {
                return;
            }
            entry.unread = Some(unread);
        }
        self.send(user, &Push::Unread(unread));
    }

    /// Records the unread count a new stream was sent when it opened.
    fn note_unread(&self, user: &UserId, unread: i64) {
        if let Some(entry) = self.users.lock().expect("hub lock").get_mut(user) {
            // Another stream of this user may show an older count: forget the last one
            // pushed, so the next refresh sends the count to all of them.
            if entry.unread != Some(unread) {
                entry.unread = entry.unread.map_or(Some(unread), |_| None);
            }
        }
    }
}

/// One open stream. Dropping it closes it.
pub struct Subscription {
    hub: Arc<Hub>,
    user: UserId,
    id: u64,
    rx: mpsc::Receiver<Push>,
    lagged: Arc<AtomicBool>,
    stop: watch::Receiver<bool>,
}

/// What a stream does next.
pub enum Next {
    Push(Push),
    /// Events were dropped because the client read too slowly: send a fresh unread count.
    Resync,
    /// The process is stopping.
    Stopping,
}

impl Subscription {
    pub fn user(&self) -> &UserId {
        &self.user
    }

    /// The next event for this stream.
    pub async fn next(&mut self) -> Next {
        if self.rx.is_empty() && self.lagged.swap(false, Ordering::SeqCst) {
            return Next::Resync;
        }
        tokio::select! {
            push = self.rx.recv() => match push {
                Some(p) => Next::Push(p),
                None => Next::Stopping,
            },
            _ = crate::shutdown::stopped(&mut self.stop) => Next::Stopping,
        }
    }

    /// Records the unread count this stream was sent when it opened.
    pub fn opened_with(&self, unread: i64) {
        self.hub.note_unread(&self.user, unread);
    }

    /// Counts an item sent to the client, with its lag from delivery.
    pub fn sent_item(&self, created_at: Ts, now: Ts) {
        self.hub.metrics.pushed.inc();
        let lag = (now - created_at).num_milliseconds().max(0) as f64 / 1000.0;
        self.hub.metrics.lag.observe(lag);
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.unsubscribe(&self.user, self.id);
    }
}

/// How services tell this process's hub that an inbox changed; does nothing in a process
/// without one (`wp-lite run`), whose deliveries the serving processes find in the store.
#[derive(Clone, Default)]
pub struct InboxSignal(Option<Arc<Hub>>);

impl InboxSignal {
    pub fn new(hub: Arc<Hub>) -> Self {
        Self(Some(hub))
    }

    pub fn items_committed(&self) {
        if let Some(h) = &self.0 {
            h.items_committed();
        }
    }

    pub fn unread_changed(&self, user: &UserId) {
        if let Some(h) = &self.0 {
            h.unread_changed(user);
        }
    }
}

/// Sequence numbers already handed out, so that overlapping reads push an item once.
#[derive(Default)]
struct Recent {
    set: HashSet<i64>,
    order: VecDeque<i64>,
}

impl Recent {
    fn first_time(&mut self, seq: i64) -> bool {
        if !self.set.insert(seq) {
            return false;
        }
        self.order.push_back(seq);
        if self.order.len() > RECENT {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        true
    }
}

/// The fan-in: runs until `stop`, reading new items for the listening users and pushing
/// them. Store errors are logged and retried at the next poll.
pub async fn run_fan_in(hub: Arc<Hub>, db: Db, mut stop: watch::Receiver<bool>) {
    // What is in the store when the process starts is not news.
    let cursor = loop {
        match db.call(|s| s.inbox_head()).await {
            Ok(head) => break head,
            Err(e) => {
                tracing::debug!(error = %e, "the real-time inbox cannot read the store yet; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(POLL) => {}
                    _ = crate::shutdown::stopped(&mut stop) => return,
                }
            }
        }
    };
    let mut pos = Position {
        cursor,
        past: VecDeque::new(),
    };
    let mut recent = Recent::default();
    let mut last_refresh = tokio::time::Instant::now();
    let mut last_round = tokio::time::Instant::now();
    let mut busy = false;
    loop {
        tokio::select! {
            _ = hub.wake.notified() => {}
            _ = tokio::time::sleep(POLL) => {}
            _ = crate::shutdown::stopped(&mut stop) => return,
        }
        // After a busy round (a broadcast commits a chunk every few milliseconds), the
        // wake-ups of the next ROUND are taken together; a lone item goes out at once.
        if busy {
            tokio::select! {
                _ = tokio::time::sleep_until(last_round + ROUND) => {}
                _ = crate::shutdown::stopped(&mut stop) => return,
            }
        }
        last_round = tokio::time::Instant::now();
        let refresh_all = last_refresh.elapsed() >= UNREAD_REFRESH;
        if refresh_all {
            last_refresh = tokio::time::Instant::now();
        }
        busy = match fan_in_once(&hub, &db, &mut pos, &mut recent, refresh_all).await {
            Ok(pushed) => pushed >= BUSY,
            Err(e) => {
                tracing::warn!(error = %e, "the real-time inbox could not read new items; retrying");
                true
            }
        };
    }
}

/// The fan-in's position: its cursor, and the cursors it had over the last [`RESCAN`].
struct Position {
    cursor: i64,
    past: VecDeque<(tokio::time::Instant, i64)>,
}

impl Position {
    fn advance(&mut self, head: i64) {
        let now = tokio::time::Instant::now();
        self.past.push_back((now, self.cursor));
        while self
            .past
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) > RESCAN)
        {
            self.past.pop_front();
        }
        self.cursor = head;
    }

    /// Where a rescan starts: the oldest cursor remembered.
    fn rescan_from(&self) -> i64 {
        self.past.front().map_or(self.cursor, |(_, c)| *c)
    }
}

async fn fan_in_once(
    hub: &Hub,
    db: &Db,
    pos: &mut Position,
    recent: &mut Recent,
    refresh_all: bool,
) -> Result<usize> {
    let mut pending = hub.take_pending();
    let (ranges, unread, rescan) = (
        pending.ranges.clone(),
        pending.unread.clone(),
        pending.rescan,
    );
    if rescan && pos.rescan_from() < pos.cursor {
        pending.ranges.push((pos.rescan_from() + 1, pos.cursor));
    }
    match push_news(hub, db, pos.cursor, pending, recent, refresh_all).await {
        Ok((head, pushed)) => {
            pos.advance(head);
            Ok(pushed)
        }
        Err(e) => {
            // Nothing is lost: the same work is done at the next wake-up or poll.
            hub.pending
                .lock()
                .expect("hub lock")
                .restore(ranges, unread, rescan);
            Err(e)
        }
    }
}

/// Pushes the listening users' items after `after` (and in the pending ranges), then the
/// unread counts that changed; returns the head it read up to and how many items it pushed.
async fn push_news(
    hub: &Hub,
    db: &Db,
    after: i64,
    pending: Pending,
    recent: &mut Recent,
    refresh_all: bool,
) -> Result<(i64, usize)> {
    let head = db.call(|s| s.inbox_head()).await?;
    let users = hub.listening();
    if users.is_empty() {
        return Ok((head, 0));
    }
    let users: Arc<[UserId]> = users.into();
    // A range reported by a NOTIFY matters only below the cursor (what lies past it is
    // read anyway): an item that committed after one with a higher id.
    let mut spans: Vec<(i64, i64)> = pending
        .ranges
        .iter()
        .filter(|&&(lo, _)| lo <= after)
        .map(|&(lo, hi)| (lo - 1, hi.min(after)))
        .collect();
    if head > after {
        spans.push((after, head));
    } else if head < after {
        // Every item was deleted and SQLite hands out low ids again: all of them are new.
        *recent = Recent::default();
        spans.push((0, head));
    }
    let mut touched: HashSet<UserId> = pending.unread;
    let mut pushed = 0;
    for (mut from, upto) in spans {
        loop {
            let batch = {
                let users = users.clone();
                db.call(move |s| s.inbox_news(from, upto, &users, BATCH))
                    .await?
            };
            let full = batch.len() == BATCH;
            if let Some(last) = batch.last() {
                from = last.seq;
            }
            for item in batch {
                if recent.first_time(item.seq) {
                    pushed += 1;
                    touched.insert(item.user.clone());
                    let user = item.user.clone();
                    hub.send(&user, &Push::Item(Box::new(item)));
                }
            }
            if !full {
                break;
            }
        }
    }
    let wanted: Vec<UserId> = if refresh_all {
        users.to_vec()
    } else {
        touched.iter().cloned().collect()
    };
    if wanted.is_empty() {
        return Ok((head, pushed));
    }
    let counts: HashMap<UserId, i64> = {
        let wanted = wanted.clone();
        db.call(move |s| s.unread_counts(&wanted))
            .await?
            .into_iter()
            .collect()
    };
    for user in wanted {
        let n = counts.get(&user).copied().unwrap_or(0);
        // After items or a read the count is always sent; the periodic refresh sends changes.
        hub.send_unread(&user, n, !touched.contains(&user));
    }
    Ok((head, pushed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_ranges_stay_bounded_and_cover_what_they_merged() {
        let mut p = Pending::default();
        for i in 0..(MAX_RANGES as i64 + 10) {
            p.add_range(i * 10, i * 10 + 5);
        }
        assert!(p.ranges.len() <= MAX_RANGES);
        let lo = p.ranges.iter().map(|r| r.0).min().unwrap();
        let hi = p.ranges.iter().map(|r| r.1).max().unwrap();
        assert_eq!((lo, hi), (0, (MAX_RANGES as i64 + 9) * 10 + 5));
    }

    #[tokio::test(start_paused = true)]
    async fn a_rescan_starts_at_the_oldest_cursor_of_its_window() {
        let mut pos = Position {
            cursor: 10,
            past: VecDeque::new(),
        };
        assert_eq!(pos.rescan_from(), 10, "nothing remembered yet");
        pos.advance(20);
        tokio::time::advance(RESCAN / 2).await;
        pos.advance(30);
        assert_eq!((pos.cursor, pos.rescan_from()), (30, 10));
        tokio::time::advance(RESCAN + Duration::from_secs(1)).await;
        pos.advance(40);
        // The cursors older than the window are forgotten.
        assert_eq!(pos.rescan_from(), 30);
    }
}
