//! The one shutdown signal every session listens to. When it fires,
//! WebSocket sessions close with 1012 (restarting, reconnect), SSE streams end
//! and held long polls answer, so that the server can stop promptly.

use std::sync::Arc;

use tokio::sync::watch;

/// Cheap to clone; all clones share one signal.
#[derive(Debug, Clone)]
pub struct Shutdown {
    tx: Arc<watch::Sender<bool>>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown { tx: Arc::new(watch::channel(false).0) }
    }
}

impl Shutdown {
    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }

    /// Resolves once the signal has fired (at once if it already has).
    pub async fn wait(&self) {
        let mut rx = self.tx.subscribe();
        // The sender lives in `self`, so `wait_for` can only end by the signal.
        let _ = rx.wait_for(|fired| *fired).await;
    }
}
