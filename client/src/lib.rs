//! `pushwire-client`: a Rust client of pushwire's wire contract (API.md), for
//! applications that are not browsers, and the client the load tool and the
//! server's tests run. It follows channels over any of the five transports
//! from a cursor, resumes from its own position when a connection is lost,
//! and reports what it received: messages, resets, and per channel a tally of
//! seqs that tells gaps and repeats. Every byte it reads or writes is counted.
//!
//! - `transport`: which transport (route, stats name, id).
//! - `net`: counted sockets, the target, keep-alive HTTP/1.1 connections.
//! - `negotiate`: compression and encoding asked for; `inflate`: reading
//!   permessage-deflate (under tungstenite) and gzip; `sse`: event streams.
//! - `webtransport`: discovery, shared QUIC endpoints, the session's frames.
//! - `tally`: the seqs received on a channel, judged.
//! - `follow`: the follower, one loop per transport.
//!
//! ```no_run
//! # async fn example() -> Result<(), String> {
//! use std::sync::Arc;
//! use pushwire_client::{Event, Follow, Target, Transport};
//!
//! let target = Arc::new(Target::resolve("http://127.0.0.1:8080", None, 1).await?);
//! let followed = Follow::new(Transport::WebSocket, target, &["news"])
//!     .cursor("news:41:8f3a") // resume after seq 41 of that epoch; without it, from now
//!     .keep_data()
//!     .until(100)
//!     .run(&mut |event: Event<'_>| match event {
//!         Event::Message { channel, seq, data, .. } => println!("{channel} #{seq}: {data:?}"),
//!         Event::Reset { channel, seq, .. } => println!("{channel}: reset, going on after {seq}"),
//!         _ => {}
//!     })
//!     .await;
//! let news = &followed.channels["news"];
//! println!("{} resets, {} gaps, {} repeats", news.resets, news.gaps, news.repeats);
//! # Ok(())
//! # }
//! ```

mod follow;
mod inflate;
mod negotiate;
mod net;
mod sse;
mod tally;
mod transport;
mod webtransport;

pub use follow::{Event, Follow, Followed, Observer, Stop};
pub use inflate::{DEFLATE_OFFER, GzipStream, Inflating, gunzip};
pub use negotiate::{Compression, Encoding, MSGPACK_PROTOCOL, MSGPACK_TYPE, Variant};
pub use net::{Counted, HttpClient, Meter, PER_SOURCE, Target};
pub use sse::{SseEvent, SseParser};
pub use tally::{Judged, Tally};
pub use transport::Transport;
pub use webtransport::{Frames, PER_ENDPOINT, Quic, Session};
