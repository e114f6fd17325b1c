//! What short and long polling share: the answer, built from the events that
//! are ready, with the cursor after them.

use std::fmt::Write;
use std::sync::Arc;

use super::{Event, Subscription, Transport};
use crate::config::Config;
use crate::encoding::Format;
use crate::encoding::msgpack::{self, write};
use crate::message::{Message, Reset, now_micros};
use crate::stats::{Counters, Stats};

/// A poll answer: `{"messages":[...],"resets":[...],"cursor":"..."}`.
#[derive(Debug, Default)]
pub struct Answer {
    pub messages: Vec<Arc<Message>>,
    /// The encoded size of `messages`.
    bytes: usize,
    pub resets: Vec<Reset>,
    pub cursor: String,
}

impl Answer {
    pub fn is_empty(&self) -> bool {
        self.messages.is_empty() && self.resets.is_empty()
    }

    pub fn push(&mut self, event: Event) {
        match event {
            Event::Message(m) => {
                self.bytes += m.json().len();
                self.messages.push(m);
            }
            Event::Reset(r) => self.resets.push(r),
        }
    }

    /// The answer's JSON, reusing each message's encoding.
    pub fn to_json(&self) -> String {
        let size: usize = self.messages.iter().map(|m| m.json().len() + 1).sum();
        let mut out = String::with_capacity(size + 64 + self.cursor.len());
        out.push_str(r#"{"messages":["#);
        for (i, message) in self.messages.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(message.json());
        }
        // unwrap: resets hold only strings and numbers.
        let _ =
            write!(out, r#"],"resets":{},"cursor":"{}"}}"#, serde_json::to_string(&self.resets).unwrap(), self.cursor);
        out
    }

    /// The answer in `format`, reusing each message's encoding.
    pub fn encode(&self, format: Format) -> Vec<u8> {
        match format {
            Format::Json => self.to_json().into_bytes(),
            Format::MsgPack => self.to_msgpack(),
        }
    }

    /// The same map as [`Answer::to_json`]'s object, in MessagePack.
    fn to_msgpack(&self) -> Vec<u8> {
        let size: usize = self.messages.iter().map(|m| m.msgpack().len()).sum();
        let mut out = Vec::with_capacity(size + 64 + self.cursor.len());
        write::map_len(&mut out, 3);
        write::str(&mut out, "messages");
        write::array_len(&mut out, self.messages.len() as u32);
        for message in &self.messages {
            out.extend_from_slice(message.msgpack());
        }
        write::str(&mut out, "resets");
        // unwrap: resets hold only strings and numbers.
        out.extend_from_slice(&msgpack::from_json(&serde_json::to_string(&self.resets).unwrap()).unwrap());
        write::str(&mut out, "cursor");
        write::str(&mut out, &self.cursor);
        out
    }

    /// Counts the answer as delivered now, when it is built.
    pub fn count(&self, stats: &Stats, transport: Transport) {
        let now = now_micros();
        for message in &self.messages {
            stats.delivered(transport, message.ts, now);
        }
        let counters = stats.get(transport);
        Counters::add(&counters.resets_delivered, self.resets.len() as u64);
        if self.messages.is_empty() {
            Counters::add(&counters.empty_polls, 1);
        }
    }
}

/// Adds the events ready now, up to `--poll-max-messages` messages and
/// `--poll-max-bytes` of them (at least one): the answer stops before the
/// message that would pass either, and its cursor says exactly how far it goes.
pub async fn collect(subscription: &mut Subscription, answer: &mut Answer, config: &Config) {
    while answer.messages.len() < config.poll_max_messages {
        match subscription.peek_ready().await {
            Ok(Some(Event::Message(m)))
                if !answer.messages.is_empty() && answer.bytes + m.json().len() > config.poll_max_bytes =>
            {
                break;
            }
            Ok(Some(_)) => {}
            // Nothing more now, lagged, or a failed read: what was collected stands.
            Ok(None) | Err(_) => break,
        }
        if let Some(event) = subscription.take_ready() {
            answer.push(event);
        }
    }
}
