//! What the dashboard's teaching panel shows: for a page that tags its
//! requests with `?client=ID`, the bytes each of its transports moved and the
//! raw bytes of its latest request and response heads, captured at the socket
//! by [`crate::wire`]. Bounded (a few KiB per client, [`MAX_CLIENTS`] clients)
//! and untouched by requests without a client id.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::watch;

use super::impairment::{Change, Impairment};
use crate::redact::redact;
use crate::transport_kind::Transport;

/// Most clients inspected at once. When full, the least recently active client
/// that no connection holds is forgotten; if every one is in use, a new page
/// is simply not inspected.
pub const MAX_CLIENTS: usize = 128;
/// Most bytes kept of one request head, response start, or SSE event.
pub const CAPTURE: usize = 4096;
/// Clients idle this long are forgotten.
const IDLE: Duration = Duration::from_secs(600);
/// A page whose network lab was changed this recently is never forgotten,
/// idle or not: an admin prepared it, and a flood of new ids must not undo that.
const LAB_KEPT: Duration = Duration::from_secs(3600);

/// One transport of one inspected client.
#[derive(Debug, Default)]
pub struct Lane {
    pub bytes_sent: AtomicU64,
    /// Compressed payloads: their size before compression and on the wire.
    pub compressed_from: AtomicU64,
    pub compressed_to: AtomicU64,
    pub bytes_received: AtomicU64,
    pub requests: AtomicU64,
    captured: Mutex<Captured>,
}

#[derive(Debug, Default, Clone)]
struct Captured {
    request: Vec<u8>,
    response: Vec<u8>,
    last_event: Vec<u8>,
}

/// An inspected client: its lanes, its "drop connections" signal and its
/// network lab settings.
#[derive(Debug)]
pub struct Inspected {
    lanes: [Lane; Transport::ALL.len()],
    drops: watch::Sender<u64>,
    touched: Mutex<Instant>,
    impairment: Mutex<Impairment>,
    /// When the lab settings last changed, if ever.
    lab_changed: Mutex<Option<Instant>>,
}

impl Inspected {
    fn new() -> Inspected {
        Inspected {
            lanes: Default::default(),
            drops: watch::channel(0).0,
            touched: Mutex::new(Instant::now()),
            impairment: Mutex::default(),
            lab_changed: Mutex::default(),
        }
    }

    /// The network this page's connections go through.
    pub fn impairment(&self) -> Impairment {
        *self.impairment.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Changes this page's network; a real change cuts its connections, so
    /// that they come back under the new conditions.
    pub fn impair(&self, change: &Change) -> Result<Impairment, String> {
        let mut impairment = self.impairment.lock().unwrap_or_else(|e| e.into_inner());
        let changed = change.apply(*impairment)?;
        if changed != *impairment {
            *impairment = changed;
            *self.lab_changed.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
            self.drop_connections();
        }
        Ok(changed)
    }

    /// Whether this page's lab was changed within [`LAB_KEPT`].
    fn lab_is_recent(&self) -> bool {
        self.lab_changed.lock().unwrap_or_else(|e| e.into_inner()).is_some_and(|at| at.elapsed() < LAB_KEPT)
    }

    pub fn lane(&self, transport: Transport) -> &Lane {
        &self.lanes[transport.index()]
    }

    fn touch(&self) {
        *self.touched.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
    }

    fn touched(&self) -> Instant {
        *self.touched.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn idle_for(&self) -> Duration {
        self.touched().elapsed()
    }

    /// Cuts every connection of this client (they resume by themselves).
    pub fn drop_connections(&self) {
        self.drops.send_modify(|generation| *generation += 1);
    }

    /// Resolves at the next [`Inspected::drop_connections`] after this call.
    pub fn dropped(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.drops.subscribe();
        async move {
            // The sender lives in the registry; if it is gone, never resolve.
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

impl Lane {
    /// A new request starts on this lane: it keeps the request head (with
    /// its credentials redacted) and captures the start of the response.
    pub fn begin(&self, request_head: Vec<u8>) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let request = redact(&request_head);
        let mut captured = self.captured.lock().unwrap_or_else(|e| e.into_inner());
        captured.request = request;
        captured.response.clear();
    }

    /// The start of what a session writes, kept without counting it: a
    /// WebTransport lane counts the UDP bytes of its connection instead.
    pub fn keep_response(&self, bytes: &[u8]) {
        let mut captured = self.captured.lock().unwrap_or_else(|e| e.into_inner());
        let room = CAPTURE.saturating_sub(captured.response.len());
        captured.response.extend_from_slice(&bytes[..room.min(bytes.len())]);
    }

    /// Bytes written for the current response.
    pub fn wrote(&self, bytes: &[u8], sse: bool) {
        self.bytes_sent.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        let mut captured = self.captured.lock().unwrap_or_else(|e| e.into_inner());
        let room = CAPTURE.saturating_sub(captured.response.len());
        captured.response.extend_from_slice(&bytes[..room.min(bytes.len())]);
        if sse && bytes.windows(7).any(|w| w == b"event: ") {
            captured.last_event = bytes[..bytes.len().min(CAPTURE)].to_vec();
        }
    }
}

/// The inspected clients. Shallow to share behind `Arc`.
#[derive(Debug, Default)]
pub struct Inspector {
    clients: Mutex<HashMap<String, Arc<Inspected>>>,
}

/// A client id: `[A-Za-z0-9]{1,32}`.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 32 && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// Whether the start of a request head tags it for inspection: its request
/// line carries `client=` (so that other requests' heads are not kept).
pub fn tags_a_client(head_start: &[u8]) -> bool {
    let line = head_start.split(|&b| b == b'\n').next().unwrap_or(head_start);
    line.windows(7).any(|w| w == b"client=")
}

/// The `client` parameter of a query string, if valid.
pub fn client_param(query: &str) -> Option<&str> {
    client_given(query).filter(|id| valid_id(id))
}

/// The `client=` value of a query string as given, valid or not.
pub fn client_given(query: &str) -> Option<&str> {
    query.split('&').find_map(|pair| pair.strip_prefix("client="))
}

/// Where a tagged request's bytes are counted: under its page's id, or, for
/// the dashboard's auto lane (`&lane=auto`, the pushwire.js client on the
/// same transports), apart under `{id}auto`.
fn counted_as(query: &str, page: &str) -> Option<String> {
    query.split('&').any(|pair| pair == "lane=auto").then(|| format!("{page}auto"))
}

/// What a tagged request belongs to: its page, whose network lab and drops
/// apply to it, and the entry its bytes are counted in (the page's own, or
/// its auto lane's).
#[derive(Debug, Clone)]
pub struct Tag {
    pub page: Arc<Inspected>,
    pub counted: Arc<Inspected>,
}

impl Tag {
    /// Resolves when either the page's or the counted entry's connections are cut.
    pub fn dropped(&self) -> impl Future<Output = ()> + Send + 'static {
        let (page, counted) = (self.page.dropped(), self.counted.dropped());
        async move {
            tokio::select! {
                () = page => {}
                () = counted => {}
            }
        }
    }
}

impl Inspector {
    /// The client with this id, registered if new; `None` when the registry is
    /// full of clients that live connections still hold.
    pub fn client(&self, id: &str) -> Option<Arc<Inspected>> {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(client) = clients.get(id) {
            client.touch();
            return Some(client.clone());
        }
        // The registry's own reference is the only one when no connection
        // holds it; a page with a recently changed lab is kept regardless.
        let idle = |c: &Arc<Inspected>| Arc::strong_count(c) == 1 && !c.lab_is_recent();
        clients.retain(|_, c| !(idle(c) && c.idle_for() >= IDLE));
        if clients.len() >= MAX_CLIENTS {
            // Compare the instants, not elapsed times taken one after another.
            let oldest =
                clients.iter().filter(|(_, c)| idle(c)).min_by_key(|(_, c)| c.touched()).map(|(id, _)| id.clone());
            clients.remove(&oldest?);
        }
        let client = Arc::new(Inspected::new());
        clients.insert(id.to_string(), client.clone());
        Some(client)
    }

    /// The tag of a request whose query names a `client`, registering its
    /// entries if new; `None` when untagged, or when the registry is full.
    pub fn tag(&self, query: &str) -> Option<Tag> {
        let id = client_param(query)?;
        let page = self.client(id)?;
        let counted = match counted_as(query, id) {
            Some(key) => self.client(&key)?,
            None => page.clone(),
        };
        Some(Tag { page, counted })
    }

    pub fn get(&self, id: &str) -> Option<Arc<Inspected>> {
        let client = self.clients.lock().unwrap_or_else(|e| e.into_inner()).get(id).cloned()?;
        client.touch();
        Some(client)
    }
}

/// `GET /api/inspect/{client}`: per transport, bytes, requests and raw heads.
#[derive(Debug, Serialize)]
pub struct Report {
    pub transports: HashMap<&'static str, LaneReport>,
}

#[derive(Debug, Serialize)]
pub struct LaneReport {
    pub bytes_sent: u64,
    /// What the same writes would have been without compression (v1.2).
    pub bytes_sent_uncompressed: u64,
    pub bytes_received: u64,
    pub requests: u64,
    /// The raw request head, as read from the socket.
    pub request: String,
    /// The start of the raw response, as written to the socket.
    pub response: String,
    /// The latest SSE event as written (SSE only).
    pub last_event: String,
}

impl Inspected {
    pub fn report(&self) -> Report {
        let transports = Transport::ALL
            .into_iter()
            .map(|t| {
                let lane = self.lane(t);
                let captured = lane.captured.lock().unwrap_or_else(|e| e.into_inner()).clone();
                let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
                let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
                let sent = get(&lane.bytes_sent);
                let report = LaneReport {
                    bytes_sent: sent,
                    bytes_sent_uncompressed: (sent + get(&lane.compressed_from))
                        .saturating_sub(get(&lane.compressed_to)),
                    bytes_received: lane.bytes_received.load(Ordering::Relaxed),
                    requests: lane.requests.load(Ordering::Relaxed),
                    request: text(&captured.request),
                    response: text(&captured.response),
                    last_event: text(&captured.last_event),
                };
                (t.name(), report)
            })
            .collect();
        Report { transports }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids_and_bounds() {
        assert_eq!(client_param("channels=a&client=abc123&x=1"), Some("abc123"));
        assert_eq!(client_param("client=bad-id"), None);
        assert_eq!(client_param("channels=a"), None);
        let inspector = Inspector::default();
        let held = inspector.client("held").unwrap(); // as a live connection holds it
        inspector.client("idle").unwrap();
        for n in 0..MAX_CLIENTS - 2 {
            inspector.client(&format!("c{n}")).unwrap();
        }
        assert!(tags_a_client(b"GET /poll?channels=a&client=x HTTP/1.1\r\nHost: h"));
        assert!(!tags_a_client(b"GET /poll?channels=a HTTP/1.1\r\nX-Note: client=x"));
        inspector.client("newcomer").unwrap();
        assert!(inspector.get("idle").is_none(), "the least recently active idle client was forgotten");
        assert!(inspector.get("held").is_some(), "a client a connection holds is kept");
        assert_eq!(inspector.clients.lock().unwrap().len(), MAX_CLIENTS);
        // Full of clients in use: a new page is not inspected.
        let in_use: Vec<_> = (0..MAX_CLIENTS).map(|n| inspector.client(&format!("u{n}"))).collect();
        assert!(in_use.iter().filter(|c| c.is_none()).count() > 0);
        drop(held);
    }

    #[test]
    fn captures_are_bounded() {
        let inspected = Inspected::new();
        let lane = inspected.lane(Transport::Sse);
        lane.begin(b"GET /sse HTTP/1.1\r\n\r\n".to_vec());
        lane.wrote(&vec![b'x'; CAPTURE * 2], false);
        lane.wrote(b"id: a:1\nevent: message\ndata: {}\n\n", true);
        let report = inspected.report();
        let sse = &report.transports["sse"];
        assert_eq!(sse.response.len(), CAPTURE);
        assert!(sse.last_event.starts_with("id: a:1"));
        assert_eq!(sse.requests, 1);
    }
}
