//! What an api served in-process shares with every other one in this binary: the metrics registry
//! and the log subscriber are per process. Every in-process api holds a [`Turn`]; a test whose
//! assertions count metrics or read logs asks for a solo turn, which waits until no other api runs
//! in the process and keeps others from starting until it ends.

use std::sync::Mutex;

use tokio::sync::Notify;

struct State {
    /// Shared turns held now.
    shared: usize,
    /// Whether a solo turn is held now.
    solo: bool,
}

static STATE: Mutex<State> = Mutex::new(State { shared: 0, solo: false });
static CHANGED: Notify = Notify::const_new();
/// Solo turns are taken one at a time.
static SOLO_QUEUE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A turn to run an api in this process; given back on drop.
pub struct Turn {
    solo: Option<tokio::sync::MutexGuard<'static, ()>>,
}

impl Turn {
    /// A turn alongside others; waits while a solo turn is held.
    pub async fn shared() -> Self {
        Self::take(|s| (!s.solo).then(|| s.shared += 1)).await;
        Self { solo: None }
    }

    /// The only turn: waits until no other turn is held. A test holds one solo turn at most, and
    /// no shared turn with it (the turn of the api it spawns is this one).
    pub async fn solo() -> Self {
        let queue = SOLO_QUEUE.lock().await;
        Self::take(|s| (s.shared == 0 && !s.solo).then(|| s.solo = true)).await;
        Self { solo: Some(queue) }
    }

    /// Waits until `claim` succeeds on the state (it is retried after every change).
    async fn take(mut claim: impl FnMut(&mut State) -> Option<()>) {
        loop {
            let changed = CHANGED.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if claim(&mut STATE.lock().expect("turn state")).is_some() {
                return;
            }
            changed.await;
        }
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        {
            let mut s = STATE.lock().expect("turn state");
            if self.solo.is_some() {
                s.solo = false;
            } else {
                s.shared -= 1;
            }
        }
        CHANGED.notify_waiters();
        // The solo queue's guard (if any) is released after the state.
    }
}
