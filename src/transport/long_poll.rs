//! Long polling: hold the request until something is after the cursor, the
//! timeout passes, or the server shuts down; answer with everything ready.

use std::time::Duration;

use super::poll::{Answer, collect};
use super::{Context, StreamRequest, Transport};
use crate::hub::HubError;

pub async fn run(ctx: Context, request: StreamRequest, timeout: Duration) -> Result<Answer, HubError> {
    let mut subscription = ctx.live_subscription();
    subscription.subscribe(&request.channels, &request.cursor).await?;
    // Counted as held from here: whatever is published from now on reaches it.
    let _open = ctx.stats.open(Transport::LongPoll);
    let mut answer = Answer::default();
    collect(&mut subscription, &mut answer, &ctx.config).await;
    if answer.is_empty() && !timeout.is_zero() {
        let shutdown = ctx.shutdown.clone();
        tokio::select! {
            _ = request.cut => {}
            event = subscription.next() => {
                if let Ok(event) = event {
                    answer.push(event);
                    collect(&mut subscription, &mut answer, &ctx.config).await;
                }
            }
            () = tokio::time::sleep(timeout) => {}
            () = shutdown.wait() => {}
        }
    }
    answer.cursor = subscription.cursor().to_string();
    answer.count(&ctx.stats, Transport::LongPoll);
    Ok(answer)
}
