//! Limits that keep one client from exhausting the server: how many
//! connections it may hold, and how fast it may publish. Both are keyed by
//! the socket's peer address (behind a proxy, set them on the proxy).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::stats::Rejection;

/// Open client connections, counted from accept to close. Shared as `Arc`.
#[derive(Debug)]
pub struct Connections {
    max: usize,
    /// 0: no per-address limit (and no lock taken).
    per_ip: usize,
    open: AtomicUsize,
    /// The most open at once since [`Connections::reset_peak`].
    peak: AtomicUsize,
    by_ip: Mutex<HashMap<IpAddr, usize>>,
}

/// Why a new connection is turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `--max-connections` reached: 503 `overloaded`.
    Overloaded,
    /// `--max-connections-per-ip` reached for this address: 429 `rate_limited`.
    TooManyFromAddress,
}

impl From<Refusal> for Rejection {
    fn from(refusal: Refusal) -> Rejection {
        match refusal {
            Refusal::Overloaded => Rejection::Connections,
            Refusal::TooManyFromAddress => Rejection::ConnectionsPerIp,
        }
    }
}

/// One admitted connection; dropping it frees its place.
#[derive(Debug)]
pub struct Permit {
    connections: Arc<Connections>,
    ip: Option<IpAddr>,
}

impl Connections {
    pub fn new(max: usize, per_ip: usize) -> Arc<Connections> {
        Arc::new(Connections {
            max,
            per_ip,
            open: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            by_ip: Mutex::default(),
        })
    }

    /// The default `--max-connections`: what the open-file limit leaves after
    /// 1024 descriptors for refusing connections, Redis and files.
    pub fn default_max() -> usize {
        open_file_limit().saturating_sub(1024).max(64)
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// Connections admitted and not closed yet.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// The most connections open at once since [`Connections::reset_peak`].
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }

    /// Starts the peak over from the connections open now.
    pub fn reset_peak(&self) {
        self.peak.store(self.open(), Ordering::Relaxed);
    }

    pub fn admit(self: &Arc<Self>, peer: Option<IpAddr>) -> Result<Permit, Refusal> {
        let before = self.open.fetch_add(1, Ordering::Relaxed);
        if before >= self.max {
            self.open.fetch_sub(1, Ordering::Relaxed);
            return Err(Refusal::Overloaded);
        }
        self.peak.fetch_max(before + 1, Ordering::Relaxed);
        let ip = peer.filter(|_| self.per_ip > 0);
        if let Some(ip) = ip {
            let mut by_ip = self.by_ip.lock().unwrap_or_else(|e| e.into_inner());
            let count = by_ip.entry(ip).or_default();
            if *count >= self.per_ip {
                drop(by_ip);
                self.open.fetch_sub(1, Ordering::Relaxed);
                return Err(Refusal::TooManyFromAddress);
            }
            *count += 1;
        }
        Ok(Permit { connections: self.clone(), ip })
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.connections.open.fetch_sub(1, Ordering::Relaxed);
        if let Some(ip) = self.ip {
            let mut by_ip = self.connections.by_ip.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(count) = by_ip.get_mut(&ip) {
                *count -= 1;
                if *count == 0 {
                    by_ip.remove(&ip);
                }
            }
        }
    }
}

fn open_file_limit() -> usize {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit only writes the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
        usize::try_from(limit.rlim_cur).unwrap_or(usize::MAX)
    } else {
        1024
    }
}

/// Most bytes of a refused client's request read before answering it, and
/// how long that may take: enough for any honest request head.
const REFUSAL_READ: usize = 8 * 1024;
const REFUSAL_WAIT: Duration = Duration::from_secs(1);

/// Answers a connection that was not admitted, before any HTTP parsing (so a
/// WebSocket upgrade gets the status instead of `101`), then closes it. The
/// request head is read first, so that closing does not reset the answer away.
pub async fn refuse(mut io: TcpStream, refusal: Refusal) {
    let mut head = [0u8; REFUSAL_READ];
    let mut read = 0;
    let _ = tokio::time::timeout(REFUSAL_WAIT, async {
        while read < head.len() && !head[..read].windows(4).any(|w| w == b"\r\n\r\n") {
            match io.read(&mut head[read..]).await {
                Ok(0) | Err(_) => break,
                Ok(n) => read += n,
            }
        }
    })
    .await;
    let (status, code, message) = match refusal {
        Refusal::Overloaded => ("503 Service Unavailable", "overloaded", "the server holds all the connections it can"),
        Refusal::TooManyFromAddress => {
            ("429 Too Many Requests", "rate_limited", "too many connections from your address")
        }
    };
    let body = format!(r#"{{"error":{{"code":"{code}","message":"{message}"}}}}"#);
    let response = format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncache-control: no-store\r\nretry-after: 1\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(REFUSAL_WAIT, async {
        let _ = io.write_all(response.as_bytes()).await;
        let _ = io.shutdown().await;
    })
    .await;
}

/// Publishes per second per client address: a token bucket each, holding
/// up to twice the rate. Shared as `Arc`.
#[derive(Debug)]
pub struct PublishRate {
    /// Tokens per second; 0: no limit.
    rate: f64,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Addresses tracked before full (idle) buckets are forgotten.
const BUCKETS: usize = 10_000;

impl PublishRate {
    pub fn new(rate: f64) -> PublishRate {
        PublishRate { rate, buckets: Mutex::default() }
    }

    /// Takes a token for `ip`, or says how long until one is there.
    pub fn check(&self, ip: Option<IpAddr>) -> Result<(), Duration> {
        let (Some(ip), true) = (ip, self.rate > 0.0) else { return Ok(()) };
        let burst = self.rate * 2.0;
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= BUCKETS && !buckets.contains_key(&ip) {
            let rate = self.rate;
            buckets.retain(|_, b| b.tokens + now.duration_since(b.at).as_secs_f64() * rate < burst);
        }
        let bucket = buckets.entry(ip).or_insert(Bucket { tokens: burst, at: now });
        bucket.tokens = (bucket.tokens + now.duration_since(bucket.at).as_secs_f64() * self.rate).min(burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / self.rate))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_capped_in_total_and_per_address() {
        let connections = Connections::new(3, 2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let first = connections.admit(Some(a)).unwrap();
        let _second = connections.admit(Some(a)).unwrap();
        assert_eq!(connections.admit(Some(a)).unwrap_err(), Refusal::TooManyFromAddress);
        let _third = connections.admit(Some(b)).unwrap();
        assert_eq!(connections.admit(Some(b)).unwrap_err(), Refusal::Overloaded);
        assert_eq!(connections.open(), 3);
        drop(first);
        assert_eq!(connections.open(), 2);
        let _again = connections.admit(Some(a)).expect("a place and the address's share came back");
        assert_eq!(connections.open(), 3);
    }

    #[test]
    fn publish_rate_allows_a_burst_of_twice_the_rate() {
        let limit = PublishRate::new(5.0);
        let ip = Some("10.0.0.1".parse().unwrap());
        for _ in 0..10 {
            assert!(limit.check(ip).is_ok());
        }
        let wait = limit.check(ip).unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_millis(200), "{wait:?}");
        assert!(limit.check(Some("10.0.0.2".parse().unwrap())).is_ok(), "another address has its own bucket");
        assert!(PublishRate::new(0.0).check(ip).is_ok(), "0 is off");
    }
}
