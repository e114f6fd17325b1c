//! The publish stream every transport receives: `rate` messages a second for
//! `duration`, each `POST /channels/{channel}/messages` with a JSON body of
//! `payload` bytes, `{"n":N,"pad":"xxx…"}`. The seqs the server answers are
//! the reference that clients' deliveries are judged against.
//!
//! Message `n` is due at `(n − 1) / rate` after the start; a few connections
//! take turns, so one slow answer delays only its own connection's messages,
//! and a late message is sent at once (the stream catches up rather than
//! thinning out).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::Method;
use serde::Deserialize;
use tokio::time::{Instant, sleep_until};

use super::net::{HttpClient, Meter, Target};

/// Connections publishing in turn.
const CONNECTIONS: u64 = 4;

/// What to publish.
#[derive(Debug, Clone)]
pub struct Plan {
    pub channel: String,
    pub rate: f64,
    pub payload: usize,
    pub duration: Duration,
}

impl Plan {
    pub fn messages(&self) -> u64 {
        (self.rate * self.duration.as_secs_f64()).round().max(1.0) as u64
    }
}

/// What publishing achieved.
#[derive(Debug, Default)]
pub struct Published {
    /// The seqs the server answered, in no particular order.
    pub seqs: Vec<u64>,
    pub errors: u64,
    /// The first failure, and whether it stopped publishing: a `4xx` will not
    /// get better by repeating it (a missing token, a body too large).
    pub first_error: Option<String>,
    pub refused: bool,
    pub elapsed: Duration,
    pub requests: u64,
}

#[derive(Deserialize)]
struct Answered {
    seq: u64,
}

/// Publishes `plan`; `done` counts messages published so far (for progress).
pub async fn run(target: Arc<Target>, plan: &Plan, meter: Arc<Meter>, done: Arc<AtomicU64>) -> Published {
    let total = plan.messages();
    let period = Duration::from_secs_f64(1.0 / plan.rate);
    let start = Instant::now();
    let refused = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for worker in 0..CONNECTIONS.min(total) {
        let (target, meter, done, refused) = (target.clone(), meter.clone(), done.clone(), refused.clone());
        let (plan, path) = (plan.clone(), format!("/channels/{}/messages", plan.channel));
        workers.push(tokio::spawn(async move {
            let mut http = HttpClient::new(target.clone(), worker as usize, meter);
            let mut out = Published::default();
            for n in (worker + 1..=total).step_by(CONNECTIONS as usize) {
                if refused.load(Ordering::Relaxed) {
                    break;
                }
                sleep_until(start + period.mul_f64((n - 1) as f64)).await;
                out.requests += 1;
                match publish(&mut http, &target, &path, body(n, plan.payload)).await {
                    Ok(seq) => {
                        out.seqs.push(seq);
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    Err((message, client_error)) => {
                        out.errors += 1;
                        out.first_error.get_or_insert(message);
                        if client_error {
                            refused.store(true, Ordering::Relaxed);
                        }
                    }
                }
            }
            out
        }));
    }
    let mut published = Published::default();
    for worker in workers {
        let Ok(out) = worker.await else { continue };
        published.seqs.extend(out.seqs);
        published.errors += out.errors;
        published.requests += out.requests;
        if published.first_error.is_none() {
            published.first_error = out.first_error;
        }
    }
    published.refused = refused.load(Ordering::Relaxed);
    published.elapsed = start.elapsed();
    published.seqs.sort_unstable();
    published
}

/// One publish; its seq, or what went wrong and whether it was a `4xx`.
async fn publish(http: &mut HttpClient, target: &Target, path: &str, body: Bytes) -> Result<u64, (String, bool)> {
    let response = http.send(target.request(Method::POST, path, body)).await.map_err(|e| (e, false))?;
    let status = response.status();
    let body = response.into_body().collect().await.map_err(|e| (e.to_string(), false))?.to_bytes();
    if status != 201 {
        let message = format!("publish answered {status}: {}", String::from_utf8_lossy(&body).trim());
        return Err((message, status.is_client_error()));
    }
    serde_json::from_slice::<Answered>(&body)
        .map(|a| a.seq)
        .map_err(|e| (format!("publish answer without a seq: {e}"), false))
}

/// `{"n":N,"pad":"xxx…"}`, padded to `payload` bytes (or as short as it gets).
pub fn body(n: u64, payload: usize) -> Bytes {
    let head = format!("{{\"n\":{n},\"pad\":\"");
    let pad = payload.saturating_sub(head.len() + 2);
    let mut body = String::with_capacity(head.len() + pad + 2);
    body.push_str(&head);
    body.extend(std::iter::repeat_n('x', pad));
    body.push_str("\"}");
    Bytes::from(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_json_of_the_asked_size() {
        for (n, payload) in [(1, 100), (12345, 256), (7, 17)] {
            let body = body(n, payload);
            assert_eq!(body.len(), payload);
            let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(value["n"], n);
        }
        assert_eq!(&body(1, 0)[..], br#"{"n":1,"pad":""}"#);
    }

    #[test]
    fn a_plan_publishes_rate_times_duration() {
        let plan = Plan { channel: "c".into(), rate: 20.0, payload: 10, duration: Duration::from_secs(2) };
        assert_eq!(plan.messages(), 40);
    }
}
