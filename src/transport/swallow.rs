//! The network lab's broken relay (`websocket: swallow`, [`crate::lab::impairment`]),
//! played by the WebSocket session.

use tokio::io::{AsyncRead, AsyncReadExt};

use super::{Connection, Context, Cut, Transport};
use crate::stats::Ending;

/// A WebSocket through a broken relay: upgraded, then silent. What the client
/// sends is read and dropped, nothing is sent back (not even pongs), until the
/// client leaves, the page's network changes, or the server shuts down; then
/// the socket is dropped without a close frame.
pub async fn swallow<T: AsyncRead + Unpin>(ctx: &Context, mut io: T, cut: Cut) {
    let mut connection = Connection::open(&ctx.stats, Transport::WebSocket, 0, None);
    let mut sink = [0; 1024];
    let drain = async { while io.read(&mut sink).await.is_ok_and(|n| n > 0) {} };
    tokio::select! {
        _ = cut => connection.end(Ending::Dropped),
        () = ctx.shutdown.wait() => connection.end(Ending::Shutdown),
        () = drain => {}
    }
}
