//! The server's own account of a run, from `GET /api/stats` before and after:
//! per transport, the connections it cut as too slow (`slow_disconnects`), the
//! bytes it sent on the wire (`bytes_sent`) and what they would have been
//! without compression (`bytes_sent_uncompressed`, API.md v1.2). A server
//! without such a page, or without a field (a v1.1 server has no
//! uncompressed count; the Node reference has byte counts only with `V12=1`),
//! gives none of it.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::Method;
use tokio::time::timeout;

use pushwire_client::{HttpClient, Meter, Target, Transport};

/// One reading of `/api/stats`: its `transports` object.
#[derive(Debug, Default)]
pub struct ServerStats(Option<serde_json::Value>);

/// What a transport's counters moved by between two readings.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Moved {
    pub slow_disconnects: Option<u64>,
    pub bytes_sent: Option<u64>,
    pub bytes_sent_uncompressed: Option<u64>,
}

impl ServerStats {
    pub async fn read(target: &Arc<Target>) -> ServerStats {
        let mut http = HttpClient::new(target.clone(), 0, Arc::new(Meter::default()));
        let request = target.request(Method::GET, "/api/stats", Bytes::new());
        let answer = async {
            let response = http.send(request).await.ok().filter(|r| r.status() == 200)?;
            let body = response.into_body().collect().await.ok()?.to_bytes();
            serde_json::from_slice::<serde_json::Value>(&body).ok().map(|mut stats| stats["transports"].take())
        };
        ServerStats(timeout(Duration::from_secs(10), answer).await.ok().flatten())
    }

    fn of(&self, transport: Transport, field: &str) -> Option<u64> {
        self.0.as_ref()?[transport.name()][field].as_u64()
    }

    /// `transport`'s counters between `self` and `later`.
    pub fn since(&self, later: &ServerStats, transport: Transport) -> Moved {
        let moved = |field| Some(later.of(transport, field)?.saturating_sub(self.of(transport, field)?));
        Moved {
            slow_disconnects: moved("slow_disconnects"),
            bytes_sent: moved("bytes_sent"),
            bytes_sent_uncompressed: moved("bytes_sent_uncompressed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_move_only_where_both_readings_have_them() {
        let before = ServerStats(Some(serde_json::json!({
            "websocket": {"slow_disconnects": 1, "bytes_sent": 100, "bytes_sent_uncompressed": 300},
            "sse": {"bytes_sent": 5},
        })));
        let after = ServerStats(Some(serde_json::json!({
            "websocket": {"slow_disconnects": 3, "bytes_sent": 1100, "bytes_sent_uncompressed": 5300},
            "sse": {"bytes_sent": 9, "bytes_sent_uncompressed": 9},
        })));
        let ws = before.since(&after, Transport::WebSocket);
        assert_eq!(
            ws,
            Moved { slow_disconnects: Some(2), bytes_sent: Some(1000), bytes_sent_uncompressed: Some(5000) }
        );
        let sse = before.since(&after, Transport::Sse);
        assert_eq!(sse, Moved { slow_disconnects: None, bytes_sent: Some(4), bytes_sent_uncompressed: None });
        assert_eq!(ServerStats::default().since(&after, Transport::Poll), Moved::default());
    }
}
