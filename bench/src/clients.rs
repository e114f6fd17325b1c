//! The run's clients: each a `pushwire_client::Follow` of the run's channel,
//! as an ordinary client of API.md runs it, its events counted into its
//! transport's [`Lane`]. Every client starts from the channel's position
//! before the first publish, so a late connection catches up instead of
//! missing messages, and a lost one resumes from its position. A client ends
//! once it holds the last published seq, or when told to stop. A client
//! picked to stall (`--stall`) is paused while the stall signal is on: it
//! neither reads its socket nor asks.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use pushwire_client::{Event, Follow, Quic, Target, Variant};
use tokio::sync::{mpsc, watch};

use super::lane::{Lane, Tally};

pub use pushwire_client::Stop;

/// What every client of a run shares.
#[derive(Debug)]
pub struct Shared {
    pub target: Arc<Target>,
    pub channel: String,
    /// The channel's position before the first publish: every client starts there.
    pub cursor: String,
    pub poll_interval: Duration,
    pub stop: watch::Receiver<Stop>,
    /// On while the clients picked to stall read nothing.
    pub stall: watch::Receiver<bool>,
    /// The compression and encoding asked for.
    pub variant: Variant,
    /// Where WebTransport sessions open, when the run has any.
    pub quic: Option<Arc<Quic>>,
}

/// A client's first word to the run: subscribed (or connected, for polls), or why not.
pub type Ready = Result<(), String>;

/// Runs client `index` of `lane` (one that `stalls`, or not) until it is
/// told to stop; returns what it received from seq `base` on.
pub async fn run(
    lane: Arc<Lane>,
    shared: Arc<Shared>,
    (index, stalls): (usize, bool),
    base: u64,
    ready: mpsc::UnboundedSender<Ready>,
) -> Tally {
    let mut follow = Follow::new(lane.transport, shared.target.clone(), &[&shared.channel])
        .cursor(&shared.cursor)
        .variant(shared.variant)
        .poll_interval(shared.poll_interval)
        .index(index)
        .meter(lane.meter.clone())
        .count_from(base)
        .stop(shared.stop.clone())
        .fail_fast();
    if let Some(quic) = &shared.quic {
        follow = follow.quic(quic.clone());
    }
    if stalls {
        follow = follow.pause(shared.stall.clone());
    }
    let mut ready = Some(ready);
    let mut announce = |said: Ready| {
        if let Some(tx) = ready.take() {
            let _ = tx.send(said);
        }
    };
    let followed = follow
        .run(&mut |event: Event<'_>| match event {
            Event::Ready => announce(Ok(())),
            Event::Failed(why) => announce(Err(why.to_string())),
            Event::Message { ts, .. } => lane.delivered(stalls, ts),
            Event::Reset { .. } => Lane::count(&lane.resets),
            Event::Request => Lane::count(&lane.requests),
            Event::Compressed => Lane::count(&lane.compressed),
            Event::CompressedMessages(n) => {
                lane.compressed_messages.fetch_add(n, Ordering::Relaxed);
            }
            Event::EmptyPoll => Lane::count(&lane.empty_polls),
            Event::Error(why) => lane.failed(why.to_string()),
            Event::Lost(_) => Lane::count(&lane.reconnects),
            Event::Subscribed { .. } => {}
        })
        .await;
    Tally {
        seqs: followed.channels.get(&shared.channel).cloned().unwrap_or_else(|| pushwire_client::Tally::new(base)),
        connected: followed.connected,
        stalled: stalls,
        reconnects: followed.reconnects,
    }
}
