//! pushwire: one notification stream over WebSocket, Server-Sent Events, long
//! polling, short polling and WebTransport, from one channel hub. The wire
//! contract is `docs/API.md`.
//!
//! # Layout
//! - [`config`]: command-line flags with environment equivalents, validated as they parse;
//!   [`base_path`], the path prefix the routes are served under.
//! - [`message`]: channel names, epochs, cursors, messages (encoded once).
//! - [`encoding`]: v1.2's compression (permessage-deflate, gzip) and
//!   MessagePack, a leaf that knows bytes, not messages.
//! - `protocol`: WebSocket client and server frames; close codes and the disconnect catalogue.
//! - `error`: the error codes of API.md and `AppError`, the error every client sees.
//! - `auth`: access tokens (JWT) and what they grant; `origins`, the origin policy
//!   (both enforced by `routes/access.rs`).
//! - [`hub`]: the `Hub` trait and its contract; the local fan-out; the memory
//!   hub (`hub/memory.rs`) and the Redis hub (`hub/redis/`); `hub/counted.rs`,
//!   the wrapper that counts publishes and history reads for `/metrics`.
//! - [`transport_kind`]: the `Transport` identity (route, stats name, client
//!   id), a leaf that counters, sockets and the dashboard import.
//! - `transport`: one module per transport (`websocket`, `sse`, `long_poll`,
//!   `short_poll`, and `webtransport`, the WebSocket session over a QUIC
//!   stream), what they share (`subscription`, its pure judgement in
//!   `position`, the poll answer in `poll`, a connection's counted and logged
//!   life in `connection`), and `swallow`, the network lab's broken relay.
//! - `routes`: HTTP wiring; handlers validate, then hand over to a transport;
//!   `routes/dashboard.rs`, the lab's routes; `routes/negotiate.rs`, what a
//!   request asks for its bytes; `routes/span.rs`, the request span
//!   of the logs, whose tokens `redact` takes out (as it does of captures).
//! - `state`: `AppState`, what routes share.
//! - `wire` and `stats`: bytes counted (and time limits kept) at the socket; the
//!   server's counters (`stats/mod.rs`), the latency histogram (`stats/latency.rs`)
//!   and their Prometheus exposition at scrape time (`stats/prometheus.rs`).
//! - `limits`: connection caps and the publish rate, per client address.
//! - [`server`]: builds the HTTP service around metered sockets, with its own
//!   HTTP/1 path (`front`), WebSocket handshakes (`upgrade`) and HTTP/2
//!   connection (`h2`), and beside it the QUIC listener for WebTransport
//!   (`quic`); `tls`: HTTPS, HTTP/2 by ALPN, plain and TLS sockets as one type.
//! - `shutdown`: the one signal every session listens to.
//! - `lab`: the dashboard's lab, known to no session: the teaching panel's
//!   captures (`inspect`), the network lab (`impairment`: what a bad proxy or a
//!   long link does to a page), and the demo publisher (`demo`).
//!
//! The load tool, `pushwire bench`, is a package of its own (`bench/`,
//! `pushwire-bench`) that uses this library; this one knows nothing of it.

mod auth;
pub mod base_path;
pub mod config;
pub mod encoding;
mod error;
pub mod hub;
mod lab;
mod limits;
pub mod message;
mod origins;
mod protocol;
mod redact;
mod routes;
pub mod server;
mod shutdown;
mod state;
mod stats;
mod tls;
mod transport;
pub mod transport_kind;
mod wire;

pub use state::AppState;
pub use transport::Context;
pub use transport_kind::Transport;
