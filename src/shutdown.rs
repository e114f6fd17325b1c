//! The one shutdown signal every session listens to. When it fires,
//! WebSocket sessions close with 1012 (restarting, reconnect), SSE streams end
//! and held long polls answer, so that the server can stop promptly.

use std::future::poll_fn;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Poll, Waker};

use tokio::sync::watch;

/// Cheap to clone; all clones share one signal.
#[derive(Debug, Clone)]
pub struct Shutdown {
    signal: Arc<Signal>,
}

#[derive(Debug)]
struct Signal {
    tx: watch::Sender<bool>,
    /// Set before the watch changes: read without its lock.
    fired: AtomicBool,
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown { signal: Arc::new(Signal { tx: watch::channel(false).0, fired: AtomicBool::new(false) }) }
    }
}

impl Shutdown {
    pub fn trigger(&self) {
        self.signal.fired.store(true, Ordering::Release);
        self.signal.tx.send_replace(true);
    }

    /// Resolves once the signal has fired (at once if it already has).
    ///
    /// A session polls this at every turn of its loop, each delivery
    /// included. Polling the watch takes a lock that every session shares,
    /// so a poll by the same task as the last one, before the signal, is
    /// answered from the flag: the watch still holds that task's waker.
    pub async fn wait(&self) {
        let mut rx = self.signal.tx.subscribe();
        // The sender lives in `self`, so `wait_for` can only end by the signal.
        let mut fired = pin!(async move {
            let _ = rx.wait_for(|fired| *fired).await;
        });
        let mut waiting: Option<Waker> = None;
        poll_fn(|cx| {
            let same_task = waiting.as_ref().is_some_and(|w| w.will_wake(cx.waker()));
            if same_task && !self.signal.fired.load(Ordering::Acquire) {
                return Poll::Pending;
            }
            let poll = fired.as_mut().poll(cx);
            waiting = Some(cx.waker().clone());
            poll
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_waiting_session_hears_the_signal() {
        let shutdown = Shutdown::default();
        let mut wait = pin!(shutdown.wait());
        for _ in 0..3 {
            assert!(tokio::time::timeout(Duration::from_millis(1), wait.as_mut()).await.is_err());
        }
        shutdown.trigger();
        tokio::time::timeout(Duration::from_secs(5), wait).await.expect("the signal");
        tokio::time::timeout(Duration::from_secs(5), shutdown.wait()).await.expect("at once, once fired");
    }
}
