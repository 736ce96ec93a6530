//! Per-socket delivery with an explicit policy.
//!
//! socketioxide gives each socket a fixed buffer (`SOCKET_BUFFER` packets, 1 024 by default) and
//! refuses an emit when it is full; a burst of ML progress messages used to fill it and the events
//! behind them (model and run outcomes among them) were lost. Every socket therefore has an [`Outbox`] drained
//! by its own task, and the relay only ever appends to outboxes:
//!
//! - **Outcomes are never dropped.** Every message that is not progress (uploads, starts, model
//!   and run outcomes, `media_update`, `processing_error`…) is queued in order and emitted when the
//!   socket's buffer has room; a full buffer means "wait", not "drop".
//! - **Progress is coalesced.** A progress message (an ML `*_PROGRESS` event with a `model_name`,
//!   relayed as `progress_update` + `analysis_progress`) of one (media, model) reaches a socket at
//!   most once per window: the first goes at once, later ones within the window are held and the
//!   latest wins. While a socket is backed up, a queued progress message is replaced in place by a
//!   newer one of the same key. Held progress of a media is released before any other message of
//!   that media, so every socket sees a media's events in publication order.
//! - **Bounds.** At most [`MAX_PROGRESS_KEYS`] distinct (media, model) progress slots per socket (a
//!   newer key beyond that is dropped and counted); at most [`MAX_BACKLOG`] queued messages, beyond
//!   which the socket is disconnected (the client reconnects and refetches) rather than growing.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::Value;
use socketioxide::extract::SocketRef;
use socketioxide::socket::Sid;
use socketioxide::{SendError, SocketError};
use tokio::sync::Notify;
use tokio::time::Instant;

use drishtiksha_common::metrics;

/// Distinct (media, model) progress slots per socket.
pub const MAX_PROGRESS_KEYS: usize = 512;
/// Queued messages per socket before it is treated as gone.
pub const MAX_BACKLOG: usize = 20_000;
/// Retry pacing while a socket's buffer is full.
const FULL_BACKOFF_MIN: Duration = Duration::from_millis(2);
const FULL_BACKOFF_MAX: Duration = Duration::from_millis(100);

/// The events one channel message becomes, emitted back to back.
pub type Events = Vec<(&'static str, Arc<Value>)>;

/// What coalescing is keyed by: (media id, model name).
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub struct ProgressKey {
    pub media_id: String,
    pub model: String,
}

/// One relayed channel message.
pub struct Message {
    /// The channel message's `event` (metric label).
    pub event: String,
    pub media_id: String,
    /// `Some` for progress (coalescible), `None` for everything else.
    pub progress: Option<ProgressKey>,
    pub events: Events,
}

struct Entry {
    key: Option<ProgressKey>,
    event: String,
    events: Events,
    /// Events of this entry already emitted.
    sent: usize,
}

struct Held {
    event: String,
    events: Events,
    due: Instant,
    /// Arrival order, to release several held keys of one media in order.
    order: u64,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Entry>,
    /// Sequence number of `queue[0]`; entry `i` has `head + i`.
    head: u64,
    /// Progress entries still replaceable in `queue`, by key → sequence number.
    open: HashMap<ProgressKey, u64>,
    held: HashMap<ProgressKey, Held>,
    last_released: HashMap<ProgressKey, Instant>,
    arrivals: u64,
    closed: bool,
}

impl State {
    fn enqueue(&mut self, key: Option<ProgressKey>, event: String, events: Events) {
        if let Some(k) = &key {
            self.open.insert(k.clone(), self.head + self.queue.len() as u64);
        }
        self.queue.push_back(Entry { key, event, events, sent: 0 });
    }

    /// Moves held progress to the queue: all of `media` (before one of its other messages), or
    /// every slot whose window has passed.
    fn release(&mut self, now: Instant, media: Option<&str>) {
        let mut ready: Vec<(ProgressKey, u64)> = self
            .held
            .iter()
            .filter(|(k, h)| media.map_or(h.due <= now, |m| k.media_id == m))
            .map(|(k, h)| (k.clone(), h.order))
            .collect();
        ready.sort_by_key(|(_, order)| *order);
        for (key, _) in ready {
            if let Some(h) = self.held.remove(&key) {
                self.last_released.insert(key.clone(), now);
                self.enqueue(Some(key), h.event, h.events);
            }
        }
    }

    fn next_due(&self) -> Option<Instant> {
        self.held.values().map(|h| h.due).min()
    }
}

/// A socket's queue of events not yet handed to socketioxide.
pub struct Outbox {
    state: Mutex<State>,
    wake: Notify,
    window: Duration,
}

impl Outbox {
    pub fn new(window: Duration) -> Self {
        Self { state: Mutex::default(), wake: Notify::new(), window }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends a message under the policy above. Returns `false` when the socket fell so far behind
    /// that it should be disconnected.
    pub fn push(&self, msg: Message) -> bool {
        let now = Instant::now();
        let mut s = self.lock();
        if s.closed {
            return true;
        }
        match msg.progress {
            Some(key) => {
                s.arrivals += 1;
                let order = s.arrivals;
                if let Some(h) = s.held.get_mut(&key) {
                    h.events = msg.events;
                    h.event = msg.event.clone();
                    metrics::SOCKET_EVENTS_COALESCED.with_label_values(&[&msg.event]).inc();
                } else if let Some(i) = s.open.get(&key).map(|seq| (seq - s.head) as usize) {
                    let entry = &mut s.queue[i];
                    entry.events = msg.events;
                    entry.event = msg.event.clone();
                    metrics::SOCKET_EVENTS_COALESCED.with_label_values(&[&msg.event]).inc();
                } else if s.held.len() + s.open.len() >= MAX_PROGRESS_KEYS {
                    metrics::SOCKET_EVENTS_DROPPED.with_label_values(&[&msg.event]).inc();
                } else {
                    match s.last_released.get(&key).map(|t| *t + self.window).filter(|due| *due > now) {
                        Some(due) => {
                            s.held.insert(key, Held { event: msg.event, events: msg.events, due, order });
                        }
                        None => {
                            if s.last_released.len() >= MAX_PROGRESS_KEYS * 4 {
                                let window = self.window;
                                s.last_released.retain(|_, t| *t + window > now);
                            }
                            s.last_released.insert(key.clone(), now);
                            s.enqueue(Some(key), msg.event, msg.events);
                        }
                    }
                }
            }
            None => {
                s.release(now, Some(&msg.media_id));
                // Progress queued before this message stays before it: no longer replaceable.
                s.open.retain(|k, _| k.media_id != msg.media_id);
                s.enqueue(None, msg.event, msg.events);
            }
        }
        let healthy = s.queue.len() <= MAX_BACKLOG;
        drop(s);
        self.wake.notify_one();
        healthy
    }

    fn close(&self) {
        let mut s = self.lock();
        s.closed = true;
        s.queue.clear();
        s.held.clear();
        s.open.clear();
        drop(s);
        self.wake.notify_one();
    }

    /// The next event to emit, or when to look again.
    fn peek(&self) -> Result<Option<(&'static str, Arc<Value>)>, Option<Instant>> {
        let mut s = self.lock();
        if s.closed {
            return Ok(None);
        }
        s.release(Instant::now(), None);
        let head = s.head;
        let Some(front) = s.queue.front() else { return Err(s.next_due()) };
        let next = front.events.get(front.sent).cloned();
        if let Some(k) = front.key.clone()
            && s.open.get(&k) == Some(&head)
        {
            // Being sent: a newer message of this key is queued behind it.
            s.open.remove(&k);
        }
        match next {
            Some(ev) => Ok(Some(ev)),
            None => {
                s.queue.pop_front();
                s.head += 1;
                drop(s);
                self.peek()
            }
        }
    }

    fn advance(&self) {
        let mut s = self.lock();
        if let Some(front) = s.queue.front_mut() {
            front.sent += 1;
            if front.sent >= front.events.len() {
                s.queue.pop_front();
                s.head += 1;
            }
        }
    }

    /// Emits queued events to `socket` until it disconnects.
    async fn drain(self: Arc<Self>, socket: SocketRef) {
        let mut backoff = FULL_BACKOFF_MIN;
        loop {
            let (name, payload) = match self.peek() {
                Ok(Some(ev)) => ev,
                Ok(None) => return,
                Err(due) => {
                    match due {
                        Some(due) => {
                            tokio::select! {
                                _ = self.wake.notified() => {}
                                _ = tokio::time::sleep_until(due) => {}
                            }
                        }
                        None => self.wake.notified().await,
                    }
                    continue;
                }
            };
            match socket.emit(name, &*payload) {
                Ok(()) => {
                    backoff = FULL_BACKOFF_MIN;
                    metrics::EVENTS_RELAYED.with_label_values(&[name]).inc();
                    self.advance();
                }
                Err(SendError::Socket(SocketError::InternalChannelFull)) => {
                    // The client is reading slower than events arrive: wait for room, keep order.
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = socket_closed(&self) => {}
                    }
                    backoff = (backoff * 2).min(FULL_BACKOFF_MAX);
                }
                Err(SendError::Socket(SocketError::Closed)) => {
                    self.close();
                    return;
                }
                Err(e) => {
                    // Not encodable: retrying cannot help.
                    tracing::error!(event = name, socket.id = %socket.id, error = %e, "socket event not encodable");
                    self.advance();
                }
            }
        }
    }
}

/// Resolves once the outbox was closed (the socket disconnected).
async fn socket_closed(outbox: &Outbox) {
    loop {
        if outbox.lock().closed {
            return;
        }
        outbox.wake.notified().await;
    }
}

/// The outboxes of this process's sockets.
#[derive(Clone, Default)]
pub struct Outboxes(Arc<Mutex<HashMap<Sid, Arc<Outbox>>>>);

impl Outboxes {
    /// Gives a newly connected socket its outbox and drain task.
    pub fn open(&self, socket: &SocketRef, window: Duration) {
        let outbox = Arc::new(Outbox::new(window));
        self.0.lock().unwrap_or_else(|p| p.into_inner()).insert(socket.id, outbox.clone());
        tokio::spawn(outbox.drain(socket.clone()));
    }

    pub fn close(&self, sid: Sid) {
        if let Some(outbox) = self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(&sid) {
            outbox.close();
        }
    }

    /// Appends `msg` to the outboxes of `sockets` (each once).
    pub fn deliver(&self, sockets: &[SocketRef], msg: Message) {
        let targets: Vec<(SocketRef, Arc<Outbox>)> = {
            let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
            let mut seen = std::collections::HashSet::new();
            sockets
                .iter()
                .filter(|s| seen.insert(s.id))
                .filter_map(|s| map.get(&s.id).map(|o| (s.clone(), o.clone())))
                .collect()
        };
        for (socket, outbox) in targets {
            let m = Message {
                event: msg.event.clone(),
                media_id: msg.media_id.clone(),
                progress: msg.progress.clone(),
                events: msg.events.clone(),
            };
            if !outbox.push(m) {
                metrics::SOCKET_OVERFLOW_DISCONNECTS.inc();
                tracing::warn!(socket.id = %socket.id, backlog = MAX_BACKLOG, "socket disconnected: too far behind");
                self.close(socket.id);
                socket.disconnect().ok();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn progress(media: &str, model: &str, n: u32) -> Message {
        Message {
            event: "FRAME_ANALYSIS_PROGRESS".into(),
            media_id: media.into(),
            progress: Some(ProgressKey { media_id: media.into(), model: model.into() }),
            events: vec![("progress_update", Arc::new(json!({ "n": n })))],
        }
    }

    fn outcome(media: &str, name: &'static str) -> Message {
        Message {
            event: "ANALYSIS_COMPLETED".into(),
            media_id: media.into(),
            progress: None,
            events: vec![("progress_update", Arc::new(json!({ "o": name }))), (name, Arc::new(json!({})))],
        }
    }

    /// Everything the outbox would emit now, as if the socket had unlimited room.
    fn drain_now(o: &Outbox) -> Vec<(&'static str, Value)> {
        let mut out = Vec::new();
        while let Ok(Some((n, v))) = o.peek() {
            out.push((n, (*v).clone()));
            o.advance();
        }
        out
    }

    #[tokio::test(start_paused = true)]
    async fn progress_within_the_window_is_held_and_the_latest_wins() {
        let o = Outbox::new(Duration::from_millis(150));
        assert!(o.push(progress("m", "A", 1)));
        assert_eq!(drain_now(&o), vec![("progress_update", json!({"n": 1}))]);
        for n in 2..=5 {
            assert!(o.push(progress("m", "A", n)));
        }
        assert_eq!(drain_now(&o), vec![], "held until the window ends");
        tokio::time::advance(Duration::from_millis(151)).await;
        assert_eq!(drain_now(&o), vec![("progress_update", json!({"n": 5}))]);
    }

    #[tokio::test(start_paused = true)]
    async fn an_outcome_releases_held_progress_of_its_media_first_and_is_never_replaced() {
        let o = Outbox::new(Duration::from_millis(150));
        o.push(progress("m", "A", 1));
        o.push(progress("other", "A", 1));
        assert_eq!(drain_now(&o).len(), 2);
        o.push(progress("m", "A", 2));
        o.push(progress("other", "A", 2));
        o.push(outcome("m", "analysis_completed"));
        o.push(progress("m", "A", 3));
        let got: Vec<Value> = drain_now(&o).into_iter().map(|(_, v)| v).collect();
        assert_eq!(got, vec![json!({"n": 2}), json!({"o": "analysis_completed"}), json!({})]);
        // `m`'s third progress came after the outcome: held for its window, like `other`'s second.
        tokio::time::advance(Duration::from_millis(151)).await;
        let later: Vec<Value> = drain_now(&o).into_iter().map(|(_, v)| v).collect();
        assert_eq!(later, vec![json!({"n": 2}), json!({"n": 3})]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_backed_up_socket_gets_the_latest_progress_in_place_and_every_outcome() {
        let o = Outbox::new(Duration::ZERO);
        o.push(progress("m", "A", 1));
        o.push(progress("m", "B", 1));
        for n in 2..=100 {
            o.push(progress("m", "A", n));
        }
        o.push(outcome("m", "run_finalized"));
        let got: Vec<Value> = drain_now(&o).into_iter().map(|(_, v)| v).collect();
        assert_eq!(got, vec![json!({"n": 100}), json!({"n": 1}), json!({"o": "run_finalized"}), json!({})]);
    }

    #[tokio::test(start_paused = true)]
    async fn outcomes_are_kept_whatever_the_backlog_until_the_bound() {
        let o = Outbox::new(Duration::ZERO);
        for _ in 0..MAX_BACKLOG {
            assert!(o.push(outcome("m", "analysis_completed")));
        }
        assert!(!o.push(outcome("m", "analysis_completed")), "the bound is reported");
        assert_eq!(drain_now(&o).len(), 2 * (MAX_BACKLOG + 1));
    }
}
