//! The publish stream every transport receives: `rate` messages a second for
//! `duration`, each `POST /channels/{channel}/messages` with a JSON body of
//! `payload` bytes, of the `--payload-kind` (`payload`). The seqs the server
//! answers are the reference that clients' deliveries are judged against.
//!
//! Message `n` is due at `(n − 1) / rate` after the start and is sent then,
//! on an idle connection of a pool that grows while every connection waits
//! for an answer (a server that fans out inside the publish request answers
//! slowly under load; the stream keeps its rate instead of thinning out).
//!
//! Each publish's delay is measured from when it was due to when it was
//! answered: a server that lets publishes queue before it stamps their `ts`
//! looks fast on publish → receive latency alone, and slow here.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::BodyExt;
use hyper::Method;
use serde::Deserialize;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep_until};

use super::payload::PayloadKind;
use pushwire_client::{HttpClient, Meter, Target};

/// Publishes in flight at most (and so connections in the pool).
const MAX_IN_FLIGHT: usize = 256;

/// What to publish.
#[derive(Debug, Clone)]
pub struct Plan {
    pub channel: String,
    pub rate: f64,
    pub payload: usize,
    pub kind: PayloadKind,
    pub duration: Duration,
}

impl Plan {
    pub fn messages(&self) -> u64 {
        (self.rate * self.duration.as_secs_f64()).round().max(1.0) as u64
    }
}

/// What publishing achieved.
#[derive(Debug)]
pub struct Published {
    /// The seqs the server answered, in order.
    pub seqs: Vec<u64>,
    pub errors: u64,
    /// The first failure, and whether it stopped publishing: a `4xx` will not
    /// get better by repeating it (a missing token, a body too large).
    pub first_error: Option<String>,
    pub refused: bool,
    pub elapsed: Duration,
    /// Connections the pool needed to keep the rate.
    pub connections: usize,
    /// Due → answered, in µs, of every publish answered `201`.
    pub delay: Histogram<u64>,
}

#[derive(Deserialize)]
struct Answered {
    seq: u64,
}

/// Publishes `plan`; `done` counts messages published so far (for progress).
pub async fn run(target: Arc<Target>, plan: &Plan, meter: Arc<Meter>, done: Arc<AtomicU64>) -> Published {
    let period = Duration::from_secs_f64(1.0 / plan.rate);
    let path: Arc<str> = format!("/channels/{}/messages", plan.channel).into();
    let idle: Arc<Mutex<Vec<HttpClient>>> = Arc::default();
    let opened = Arc::new(AtomicU64::new(0));
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let refused = Arc::new(AtomicBool::new(false));
    let mut sends = JoinSet::new();
    let start = Instant::now();
    for n in 1..=plan.messages() {
        let due = start + period.mul_f64((n - 1) as f64);
        sleep_until(due).await;
        // unwrap: the semaphore is never closed.
        let permit = in_flight.clone().acquire_owned().await.unwrap();
        if refused.load(Ordering::Relaxed) {
            break;
        }
        let (target, meter, path, body) =
            (target.clone(), meter.clone(), path.clone(), plan.kind.body(n, plan.payload));
        let (idle, opened, done, refused) = (idle.clone(), opened.clone(), done.clone(), refused.clone());
        sends.spawn(async move {
            let taken = idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
            let mut http = taken.unwrap_or_else(|| {
                let index = opened.fetch_add(1, Ordering::Relaxed) as usize;
                HttpClient::new(target.clone(), index, meter)
            });
            let result = publish(&mut http, &target, &path, body).await.map(|seq| (seq, due.elapsed()));
            idle.lock().unwrap_or_else(|e| e.into_inner()).push(http);
            drop(permit);
            match &result {
                Ok(_) => {
                    done.fetch_add(1, Ordering::Relaxed);
                }
                Err((_, client_error)) => {
                    if *client_error {
                        refused.store(true, Ordering::Relaxed);
                    }
                }
            }
            result
        });
    }
    let mut published = Published {
        seqs: Vec::new(),
        errors: 0,
        first_error: None,
        refused: false,
        elapsed: Duration::ZERO,
        connections: 0,
        delay: super::lane::histogram(),
    };
    while let Some(sent) = sends.join_next().await {
        match sent {
            Ok(Ok((seq, delay))) => {
                published.seqs.push(seq);
                published.delay.saturating_record(delay.as_micros() as u64);
            }
            Ok(Err((message, _))) => {
                published.errors += 1;
                published.first_error.get_or_insert(message);
            }
            Err(e) => {
                published.errors += 1;
                published.first_error.get_or_insert(e.to_string());
            }
        }
    }
    published.refused = refused.load(Ordering::Relaxed);
    published.elapsed = start.elapsed();
    published.connections = opened.load(Ordering::Relaxed) as usize;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_publishes_rate_times_duration() {
        let plan = Plan {
            channel: "c".into(),
            rate: 20.0,
            payload: 10,
            kind: PayloadKind::Random,
            duration: Duration::from_secs(2),
        };
        assert_eq!(plan.messages(), 40);
    }
}
