//! Short polling: answer at once with what is after the cursor. Nothing live
//! is registered; the answer's cursor names every requested channel.

use super::poll::{Answer, collect};
use super::{Connection, Context, StreamRequest, Subscription, Transport};
use crate::hub::HubError;
use crate::stats::Ending;

pub async fn run(ctx: Context, request: StreamRequest) -> Result<Answer, HubError> {
    let mut connection = Connection::open(&ctx.stats, Transport::Poll, request.channels.len(), None);
    let mut subscription = Subscription::once(ctx.hub.clone(), ctx.reads());
    if let Err(e) = subscription.subscribe(&request.channels, &request.cursor).await {
        connection.end(Ending::HubFailure);
        return Err(e);
    }
    let mut answer = Answer::default();
    collect(&mut subscription, &mut answer, &ctx.config).await;
    answer.cursor = subscription.cursor().to_string();
    answer.count(&ctx.stats, Transport::Poll);
    connection.end(Ending::Normal);
    Ok(answer)
}
