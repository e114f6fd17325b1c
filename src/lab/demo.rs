//! The built-in demo publisher: a small JSON notification on one channel,
//! a few times a second, so that a fresh server has a stream to look at. Its
//! rate and payload size can be changed while it runs (the dashboard does).

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio::sync::watch;

use crate::hub::Hub;
use crate::message::ChannelName;
use crate::shutdown::Shutdown;

const KINDS: [&str; 4] = ["order.created", "user.signed_in", "build.passed", "alert.cleared"];

/// Highest rate and padding the demo accepts at run time.
pub const MAX_RATE: f64 = 1000.0;
pub const MAX_PAYLOAD: usize = 16 * 1024;

/// What the demo publishes: messages per second (0: paused) and padding bytes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DemoSettings {
    pub rate: f64,
    pub payload: usize,
}

impl DemoSettings {
    pub fn validate(&self) -> Result<(), String> {
        validate_rate(self.rate)?;
        validate_payload(self.payload)
    }
}

/// The one check of a demo rate, for the flag and the API alike.
pub fn validate_rate(rate: f64) -> Result<(), String> {
    if rate.is_finite() && (0.0..=MAX_RATE).contains(&rate) {
        Ok(())
    } else {
        Err(format!("rate must be between 0 and {MAX_RATE} messages per second"))
    }
}

pub fn validate_payload(payload: usize) -> Result<(), String> {
    if payload <= MAX_PAYLOAD { Ok(()) } else { Err(format!("payload must be at most {MAX_PAYLOAD} bytes")) }
}

/// The demo's settings, shared by the publisher and the API. Clones are shallow.
#[derive(Debug, Clone)]
pub struct DemoControl {
    pub channel: ChannelName,
    settings: Arc<watch::Sender<DemoSettings>>,
}

impl DemoControl {
    pub fn new(channel: ChannelName, settings: DemoSettings) -> DemoControl {
        DemoControl { channel, settings: Arc::new(watch::channel(settings).0) }
    }

    pub fn settings(&self) -> DemoSettings {
        *self.settings.borrow()
    }

    pub fn set(&self, settings: DemoSettings) {
        self.settings.send_replace(settings);
    }
}

/// Publishes until shutdown, following the control's settings.
pub async fn run(hub: Arc<dyn Hub>, control: DemoControl, shutdown: Shutdown) {
    let mut settings = control.settings.subscribe();
    let mut n = 0u64;
    loop {
        let DemoSettings { rate, payload } = *settings.borrow_and_update();
        if rate <= 0.0 {
            tokio::select! {
                changed = settings.changed() => if changed.is_err() { return },
                () = shutdown.wait() => return,
            }
            continue;
        }
        let pad = "x".repeat(payload);
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                changed = settings.changed() => if changed.is_err() { return } else { break },
                () = shutdown.wait() => return,
            }
            n += 1;
            let kind = KINDS[(n % KINDS.len() as u64) as usize];
            let text = format!(r#"{{"n":{n},"kind":"{kind}","text":"demo notification {n}","pad":"{pad}"}}"#);
            // unwrap: the text above is valid JSON (kind and pad need no escaping).
            let data = RawValue::from_string(text).unwrap();
            if let Err(e) = hub.publish(control.channel.clone(), data, None).await {
                tracing::warn!(error = %e, "demo publish failed");
            }
        }
    }
}
