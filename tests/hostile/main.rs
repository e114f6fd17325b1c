//! The hostile soak, in a test binary of its own: it measures the server's
//! peak memory under attack, which the contract suite's many concurrent
//! tests (three hubs, a Redis Cluster) would inflate by starving it of CPU.

use pushwire_testkit as common;

mod hostile;
mod http2;
