//! Long polling: hold the request until something is after the cursor, the
//! timeout passes, or the server shuts down; answer with everything ready.

use std::time::Duration;

use super::poll::{Answer, collect};
use super::{Connection, Context, CutReason, StreamRequest, Transport};
use crate::hub::HubError;
use crate::stats::Ending;

pub async fn run(ctx: Context, request: StreamRequest, timeout: Duration) -> Result<Answer, HubError> {
    let mut subscription = ctx.live_subscription();
    subscription.subscribe(&request.channels, &request.cursor).await?;
    // Counted as held from here: whatever is published from now on reaches it.
    // No byte counts in its log line: its answer is written after it ends.
    let mut connection = Connection::open(&ctx.stats, Transport::LongPoll, request.channels.len(), None);
    let mut answer = Answer::default();
    collect(&mut subscription, &mut answer, &ctx.config).await;
    if answer.is_empty() && !timeout.is_zero() {
        let shutdown = ctx.shutdown.clone();
        tokio::select! {
            why = request.cut => connection.end(match why {
                CutReason::Dropped => Ending::Dropped,
                CutReason::TokenExpired => Ending::TokenExpired,
            }),
            event = subscription.next() => {
                if let Ok(event) = event {
                    answer.push(event);
                    collect(&mut subscription, &mut answer, &ctx.config).await;
                }
            }
            () = tokio::time::sleep(timeout) => {}
            () = shutdown.wait() => connection.end(Ending::Shutdown),
        }
    }
    answer.cursor = subscription.cursor().to_string();
    answer.count(&ctx.stats, Transport::LongPoll);
    connection.delivered(answer.messages.len());
    connection.end(Ending::Normal);
    Ok(answer)
}
