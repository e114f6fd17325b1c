//! The server as its clients meet it, over real sockets: the wire contract
//! of API.md against every hub, and beside it the limits, TLS and HTTP/2, the
//! network lab's endpoints, the binary's process behaviour and the bench tool.

use pushwire_testkit as common;
use pushwire_testkit::for_each_hub;

mod access;
mod base_path;
mod bench;
mod canary;
mod client;
mod cluster;
mod compression;
mod dashboard_api;
mod errors;
mod front;
mod http2;
mod hub_contract;
mod lab;
mod limits;
mod long_poll;
mod metrics;
mod msgpack;
mod process;
mod redis_hub;
mod resets;
mod server;
mod short_poll;
mod sse;
mod tls;
mod websocket;
mod webtransport;
mod write_delay;
