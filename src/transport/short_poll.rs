//! Short polling: answer at once with what is after the cursor. Nothing live
//! is registered; the answer's cursor names every requested channel.

use super::poll::{Answer, collect};
use super::{Context, StreamRequest, Subscription, Transport};
use crate::hub::HubError;

pub async fn run(ctx: Context, request: StreamRequest) -> Result<Answer, HubError> {
    let _open = ctx.stats.open(Transport::Poll);
    let mut subscription = Subscription::once(ctx.hub.clone(), ctx.reads());
    subscription.subscribe(&request.channels, &request.cursor).await?;
    let mut answer = Answer::default();
    collect(&mut subscription, &mut answer, &ctx.config).await;
    answer.cursor = subscription.cursor().to_string();
    answer.count(&ctx.stats, Transport::Poll);
    Ok(answer)
}
