//! pushwire: one notification stream over WebSocket, Server-Sent Events, long
//! polling and short polling, from one channel hub. The wire contract is
//! `API.md` (see the README).
//!
//! # Layout
//! - [`config`]: command-line flags with environment equivalents.
//! - [`message`]: channel names, epochs, cursors, messages (encoded once).
//! - [`protocol`]: WebSocket client/server frames, error and close codes.
//! - [`error`]: `AppError`, the JSON error every HTTP client sees.
//! - [`hub`]: the `Hub` trait and its contract; the local fan-out; the memory hub.
//! - [`transport`]: resume logic shared by all transports, then one module each.
//! - [`routes`]: HTTP wiring: handlers validate, then hand over to a transport.
//! - [`wire`] and [`stats`]: bytes counted at the socket; per-transport counters.
//! - [`server`]: builds the HTTP service around metered sockets.
//! - [`shutdown`]: the one signal every session listens to.
//! - [`demo`]: the built-in demo publisher, adjustable at run time.
//! - [`inspect`]: per-page captures for the dashboard's teaching panel.

pub mod config;
pub mod demo;
pub mod error;
pub mod hub;
pub mod inspect;
pub mod message;
pub mod protocol;
pub mod routes;
pub mod server;
pub mod shutdown;
pub mod stats;
pub mod transport;
pub mod wire;
