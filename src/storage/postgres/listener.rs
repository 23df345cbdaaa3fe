//! LISTEN/NOTIFY: one thread per store holds a connection that listens on the store's
//! channels and calls the subscribers when another node (or process) made work ready.
//! If the connection drops it reconnects with backoff, waking everyone on reconnect (a
//! notification may have been missed); meanwhile the callers' bounded polling covers.

use crate::storage::{Wake, WakeFn};
use postgres::fallible_iterator::FallibleIterator;
use postgres::{Config, NoTls};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// The channel names of one store (they carry the schema, so stores in different schemas
/// of one database do not wake each other), and the server processes of the store's own
/// connections.
#[derive(Debug, Clone)]
pub struct Channels {
    pub jobs: String,
    pub broadcasts: String,
    /// New inbox items; the payload is `"lo hi"`, their sequence numbers.
    pub inbox: String,
    /// The backend process ids of this store's open connections. Their `jobs` wake-ups are
    /// not delivered back to this process: its services announce the jobs they make ready
    /// to its ready queue themselves, waking only waiters of those types, where the
    /// type-less wake-up would wake every waiter to lease nothing.
    own: Arc<Mutex<HashSet<i32>>>,
}

impl Channels {
    pub fn for_schema(schema: &str) -> Self {
        Self {
            jobs: format!("wp_lite_jobs.{schema}"),
            broadcasts: format!("wp_lite_broadcasts.{schema}"),
            inbox: format!("wp_lite_inbox.{schema}"),
            own: Arc::default(),
        }
    }

    /// A connection of this store opened (`true`) or closed, served by backend `pid`.
    pub fn own_connection(&self, pid: i32, open: bool) {
        let mut own = self.own.lock().expect("own connections lock");
        if open {
            own.insert(pid);
        } else {
            own.remove(&pid);
        }
    }

    pub(super) fn sent_by_this_store(&self, channel: &str, pid: i32) -> bool {
        channel == self.jobs
            && self
                .own
                .lock()
                .expect("own connections lock")
                .contains(&pid)
    }

    pub fn name(&self, w: Wake) -> &str {
        match w {
            Wake::Jobs => &self.jobs,
            Wake::Broadcasts => &self.broadcasts,
            Wake::Inbox { .. } | Wake::InboxRescan => &self.inbox,
        }
    }

    fn which(&self, channel: &str, payload: &str) -> Option<Wake> {
        if channel == self.jobs {
            Some(Wake::Jobs)
        } else if channel == self.broadcasts {
            Some(Wake::Broadcasts)
        } else if channel == self.inbox {
            let (lo, hi) = payload.split_once(' ')?;
            Some(Wake::Inbox {
                lo: lo.parse().ok()?,
                hi: hi.parse().ok()?,
            })
        } else {
            None
        }
    }
}

fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

pub type Subscribers = Arc<Mutex<Vec<WakeFn>>>;

pub struct Listener {
    stop: Arc<AtomicBool>,
    handle: Mutex<Option<JoinHandle<()>>>,
}

impl Listener {
    pub fn start(config: Config, channels: Channels, subs: Subscribers) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let handle = std::thread::Builder::new()
            .name("wp-lite-pg-listener".into())
            .spawn(move || run(config, channels, subs, s))
            .expect("spawn the PostgreSQL listener thread");
        Self {
            stop,
            handle: Mutex::new(Some(handle)),
        }
    }

    pub fn close(&self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.lock().expect("listener lock").take() {
            let _ = h.join();
        }
    }
}

fn deliver(subs: &Subscribers, w: Wake) {
    let subs = subs.lock().expect("subscribers lock").clone();
    for f in subs {
        f(w);
    }
}

const POLL: Duration = Duration::from_millis(250);

fn run(config: Config, channels: Channels, subs: Subscribers, stop: Arc<AtomicBool>) {
    let mut backoff = Duration::from_millis(100);
    while !stop.load(Ordering::SeqCst) {
        let mut client = match config.connect(NoTls) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "the PostgreSQL listener cannot connect; waiting workers fall back to polling");
                std::thread::sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        let listen = format!(
            "LISTEN {}; LISTEN {}; LISTEN {};",
            quote_ident(&channels.jobs),
            quote_ident(&channels.broadcasts),
            quote_ident(&channels.inbox)
        );
        if let Err(e) = client.batch_execute(&listen) {
            tracing::warn!(error = %e, "LISTEN failed");
            std::thread::sleep(backoff);
            continue;
        }
        backoff = Duration::from_millis(100);
        tracing::debug!("listening for wake-ups from other nodes");
        // Something may have happened while we were not listening.
        deliver(&subs, Wake::Jobs);
        deliver(&subs, Wake::Broadcasts);
        deliver(&subs, Wake::InboxRescan);
        'conn: while !stop.load(Ordering::SeqCst) {
            let mut notes = client.notifications();
            let mut it = notes.timeout_iter(POLL);
            loop {
                match it.next().transpose() {
                    Some(Ok(n)) if channels.sent_by_this_store(n.channel(), n.process_id()) => {}
                    Some(Ok(n)) => {
                        if let Some(w) = channels.which(n.channel(), n.payload()) {
                            deliver(&subs, w);
                        }
                    }
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "the PostgreSQL listener lost its connection; reconnecting");
                        break 'conn;
                    }
                    None => break,
                }
            }
            drop(it);
            drop(notes);
            if client.is_closed() {
                break;
            }
        }
    }
}
