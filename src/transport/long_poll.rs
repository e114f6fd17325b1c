//! Long polling: hold the request until something is after the cursor, the
//! timeout passes, or the server shuts down; answer with everything ready.
//!
//! [`open`] subscribes and takes what is ready; a poll with nothing ready
//! comes back [`Waiting`], which holds no more than the wait needs, so that
//! the server's own HTTP/1 path can keep it instead of the request's whole
//! future (`routes::Holdable`).

use std::time::Duration;

use super::poll::{Answer, collect};
use super::{Connection, Context, Cut, CutReason, StreamRequest, Subscription, Transport, gather_for};
use crate::hub::HubError;
use crate::stats::Ending;

/// A poll after [`open`]: answered at once, or waiting for something.
// Made once per poll and taken apart at once; a waiting poll moves into its
// own (boxed) future anyway.
#[allow(clippy::large_enum_variant)]
pub enum Opened {
    Ready(Answer),
    Waiting(Waiting),
}

/// A subscribed poll waiting for something after its cursor.
pub struct Waiting {
    ctx: Context,
    subscription: Subscription,
    connection: Connection,
    cut: Cut,
    timeout: Duration,
}

/// Subscribes and takes what is ready: answered when anything is (or when
/// the poll may not wait), waiting otherwise.
pub async fn open(ctx: Context, request: StreamRequest, timeout: Duration) -> Result<Opened, HubError> {
    let mut subscription = ctx.live_subscription();
    subscription.subscribe(&request.channels, &request.cursor).await?;
    // Counted as held from here: whatever is published from now on reaches it.
    // No byte counts in its log line: its answer is written after it ends.
    let connection = Connection::open(&ctx.stats, Transport::LongPoll, request.channels.len(), None);
    let mut answer = Answer::default();
    collect(&mut subscription, &mut answer, &ctx.config).await;
    // `--write-delay`: messages just published are held with what follows them
    // (a poll that may not wait is not held).
    let oldest = answer.messages.iter().map(|m| m.ts).min();
    if oldest.is_some()
        && !timeout.is_zero()
        && let Some(delay) = gather_for(ctx.config.write_delay, oldest)
    {
        delay.await;
        collect(&mut subscription, &mut answer, &ctx.config).await;
    }
    let waiting = Waiting { ctx, subscription, connection, cut: request.cut, timeout };
    if answer.is_empty() && !timeout.is_zero() {
        return Ok(Opened::Waiting(waiting));
    }
    Ok(Opened::Ready(waiting.answer(answer)))
}

impl Waiting {
    /// Waits for the first event, then answers with it and everything ready
    /// after it; empty at the timeout, a cut or the server's shutdown. Not an
    /// `async fn`: one would keep `self` twice in the state a held poll
    /// keeps (rust-lang/rust#62958).
    #[allow(clippy::manual_async_fn, reason = "an async fn keeps its arguments twice")]
    pub fn wait(mut self) -> impl Future<Output = Answer> {
        async move {
            let mut answer = Answer::default();
            let shutdown = self.ctx.shutdown.clone();
            tokio::select! {
                why = &mut self.cut => self.connection.end(match why {
                    CutReason::Dropped => Ending::Dropped,
                    CutReason::TokenExpired => Ending::TokenExpired,
                }),
                event = self.subscription.next() => {
                    if let Ok(event) = event {
                        if let Some(delay) = gather_for(self.ctx.config.write_delay, event.published()) {
                            delay.await;
                        }
                        answer.push(event);
                        collect(&mut self.subscription, &mut answer, &self.ctx.config).await;
                    }
                }
                () = tokio::time::sleep(self.timeout) => {}
                () = shutdown.wait() => self.connection.end(Ending::Shutdown),
            }
            self.answer(answer)
        }
    }

    fn answer(mut self, mut answer: Answer) -> Answer {
        answer.cursor = self.subscription.cursor().to_string();
        answer.count(&self.ctx.stats, Transport::LongPoll);
        self.connection.delivered(answer.messages.len());
        self.connection.end(Ending::Normal);
        answer
    }
}
