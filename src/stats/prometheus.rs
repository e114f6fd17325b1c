//! `/metrics`: [`Stats`] and the hub's state in the Prometheus text format,
//! rendered by `metrics-exporter-prometheus`.
//!
//! Each server has its own recorder (tests run many servers in one process,
//! so a global one would mix them up). Nothing records into it while
//! messages flow: at scrape time the atomics of [`Stats`] are registered
//! into it as absolute values, then it renders. The latency histograms are
//! kept as fixed buckets ([`super::Latency`]), which the recorder cannot take
//! (its histograms store every sample until drained), so they are written
//! with the same crate's formatting functions.

use std::sync::atomic::{AtomicU64, Ordering};

use metrics::{Key, Label, counter, describe_counter, describe_gauge, gauge, with_local_recorder};
use metrics_exporter_prometheus::formatting::{write_help_line, write_metric_line, write_type_line};
use metrics_exporter_prometheus::{LabelSet, PrometheusBuilder, PrometheusRecorder};

use super::{Ending, Rejection, Stats, Traffic};
use crate::hub::{Hub, HubError};
use crate::transport_kind::Transport;

/// Counters: name and help. Per-transport ones carry `transport`.
const COUNTERS: [(&str, &str); 16] = [
    ("pushwire_requests_total", "HTTP requests routed, per transport (publish and other included)."),
    ("pushwire_sent_bytes_total", "Bytes written to sockets, HTTP headers and framing included."),
    (
        "pushwire_sent_uncompressed_bytes_total",
        "What the sent bytes would have been without compression (equal when nothing was compressed).",
    ),
    ("pushwire_received_bytes_total", "Bytes read from sockets, HTTP headers and framing included."),
    ("pushwire_connections_opened_total", "Connections opened (held requests for polls)."),
    ("pushwire_connections_closed_total", "Connections closed (held requests answered), by reason."),
    ("pushwire_messages_delivered_total", "Messages handed to sockets or put in poll answers."),
    ("pushwire_resets_delivered_total", "Reset events delivered to clients."),
    ("pushwire_empty_polls_total", "Poll answers that carried no message."),
    ("pushwire_slow_disconnects_total", "Connections cut for not keeping up with the stream."),
    ("pushwire_hub_publishes_total", "Publishes attempted on the hub, failed ones included."),
    ("pushwire_hub_publish_errors_total", "Publishes that failed, by kind (unavailable, full, uncertain)."),
    ("pushwire_hub_history_reads_total", "History reads made on the hub."),
    ("pushwire_hub_reconnects_total", "Times the hub's store (Redis) came back after being unreachable."),
    (
        "pushwire_hub_canary_failures_total",
        "Times the Redis pub/sub canary did not come back, so the link was replaced.",
    ),
    ("pushwire_limit_rejections_total", "Requests, frames and connections refused or cut by a limit or access rule."),
];

const GAUGES: [(&str, &str); 5] = [
    ("pushwire_connections_open", "Open connections (held requests for polls)."),
    ("pushwire_hub_ready", "Whether the hub is reachable (1) or not (0)."),
    ("pushwire_hub_channels", "Channels the hub holds (memory) or has local subscribers for (Redis)."),
    ("pushwire_hub_retained_bytes", "Bytes of history the hub holds in this process."),
    ("pushwire_hub_pubsub_channels", "Channels this process is subscribed to on Redis pub/sub."),
];

const LATENCY: &str = "pushwire_delivery_latency_seconds";
const LATENCY_HELP: &str = "Time from the hub stamping a message (its ts) to handing it to the socket \
(WebSocket, SSE) or putting it in an answer (polls); catch-up from history counts its age.";

/// A server's own recorder.
#[derive(Debug)]
pub struct Exposition {
    recorder: PrometheusRecorder,
}

impl Exposition {
    pub fn new() -> Exposition {
        let recorder = PrometheusBuilder::new().build_recorder();
        with_local_recorder(&recorder, || {
            for (name, help) in COUNTERS {
                describe_counter!(name, help);
            }
            for (name, help) in GAUGES {
                describe_gauge!(name, help);
            }
        });
        Exposition { recorder }
    }

    pub fn render(&self, stats: &Stats, hub: &dyn Hub) -> String {
        with_local_recorder(&self.recorder, || {
            register_transports(stats);
            register_hub(stats, hub);
            for rejection in Rejection::ALL {
                counter!("pushwire_limit_rejections_total", "kind" => rejection.name())
                    .absolute(get(&stats.rejections[rejection as usize]));
            }
        });
        let mut out = self.recorder.handle().render();
        write_latency(&mut out, stats);
        out
    }
}

fn get(counter: &AtomicU64) -> u64 {
    counter.load(Ordering::Relaxed)
}

fn register_transports(stats: &Stats) {
    for traffic in Traffic::ALL {
        let c = stats.get(traffic);
        let t = traffic.name();
        counter!("pushwire_requests_total", "transport" => t).absolute(get(&c.requests));
        counter!("pushwire_sent_bytes_total", "transport" => t).absolute(get(&c.bytes_sent));
        counter!("pushwire_sent_uncompressed_bytes_total", "transport" => t).absolute(c.bytes_sent_uncompressed());
        counter!("pushwire_received_bytes_total", "transport" => t).absolute(get(&c.bytes_received));
        let Traffic::Stream(transport) = traffic else { continue };
        gauge!("pushwire_connections_open", "transport" => t).set(c.connections_open.load(Ordering::Relaxed) as f64);
        counter!("pushwire_connections_opened_total", "transport" => t).absolute(get(&c.connections_total));
        counter!("pushwire_messages_delivered_total", "transport" => t).absolute(get(&c.messages_delivered));
        counter!("pushwire_resets_delivered_total", "transport" => t).absolute(get(&c.resets_delivered));
        counter!("pushwire_empty_polls_total", "transport" => t).absolute(get(&c.empty_polls));
        counter!("pushwire_slow_disconnects_total", "transport" => t).absolute(get(&c.slow_disconnects));
        for ending in Ending::ALL {
            let n = get(&stats.closed[transport.index()][ending as usize]);
            if n > 0 || ending.expected(transport) {
                counter!("pushwire_connections_closed_total", "transport" => t, "reason" => ending.name()).absolute(n);
            }
        }
    }
}

fn register_hub(stats: &Stats, hub: &dyn Hub) {
    let counts = &stats.hub;
    counter!("pushwire_hub_publishes_total").absolute(get(&counts.publishes));
    for (kind, errors) in HubError::ALL_KINDS.into_iter().zip(&counts.publish_errors) {
        counter!("pushwire_hub_publish_errors_total", "kind" => kind).absolute(get(errors));
    }
    counter!("pushwire_hub_history_reads_total").absolute(get(&counts.history_reads));
    let gauges = hub.gauges();
    counter!("pushwire_hub_reconnects_total").absolute(gauges.reconnects);
    counter!("pushwire_hub_canary_failures_total").absolute(gauges.canary_failures);
    gauge!("pushwire_hub_ready").set(if hub.is_ready() { 1.0 } else { 0.0 });
    gauge!("pushwire_hub_channels").set(gauges.channels as f64);
    gauge!("pushwire_hub_retained_bytes").set(gauges.retained_bytes as f64);
    gauge!("pushwire_hub_pubsub_channels").set(gauges.pubsub_channels as f64);
}

/// One histogram per transport: cumulative `_bucket`s ending at `le="+Inf"`,
/// which equals `_count`, then `_sum` in seconds.
fn write_latency(out: &mut String, stats: &Stats) {
    write_help_line(out, LATENCY, None, None, LATENCY_HELP);
    write_type_line(out, LATENCY, None, None, "histogram");
    for transport in Transport::ALL {
        let key = Key::from_parts(LATENCY, vec![Label::new("transport", transport.name())]);
        let labels = LabelSet::from_key_and_global(&key, &Default::default());
        let latency = stats.latency[transport.index()].snapshot();
        for (le, count) in latency.buckets {
            write_metric_line(out, LATENCY, Some("bucket"), &labels, Some(("le", le)), count, None);
        }
        write_metric_line(out, LATENCY, Some("bucket"), &labels, Some(("le", "+Inf")), latency.count, None);
        write_metric_line::<&str, f64>(out, LATENCY, Some("sum"), &labels, None, latency.sum_secs, None);
        write_metric_line::<&str, u64>(out, LATENCY, Some("count"), &labels, None, latency.count, None);
    }
    out.push('\n');
}
