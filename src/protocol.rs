//! The WebSocket conversation: frames a client sends, frames the server
//! answers with, and the close codes with what each tells the client.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::error::{AppError, ErrorCode};
use crate::message::{ChannelName, Epoch, IdempotencyKey, Invalid, ParseError};
use crate::stats::{Ending, Rejection};

/// WebSocket close codes and what a client should do on each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseCode {
    /// 1000: the session ended normally; reconnect only if still wanted.
    Normal,
    /// 1002: the peer broke the WebSocket protocol.
    ProtocolError,
    /// 1007: a text frame was not valid UTF-8 (RFC 6455).
    InvalidData,
    /// 1008: refused by policy (auth, origin, a message left unfinished); reconnecting will not help.
    Policy,
    /// 1009: a frame exceeded the frame limit; send smaller frames.
    TooBig,
    /// 1011: the server failed; reconnect with backoff.
    Internal,
    /// 1012: the server is restarting; reconnect soon (elsewhere), resume from the cursor.
    Restarting,
    /// 1013: overloaded or too slow to keep up; back off, then resume from the cursor.
    TryAgainLater,
}

impl CloseCode {
    pub fn code(self) -> u16 {
        match self {
            CloseCode::Normal => 1000,
            CloseCode::ProtocolError => 1002,
            CloseCode::InvalidData => 1007,
            CloseCode::Policy => 1008,
            CloseCode::TooBig => 1009,
            CloseCode::Internal => 1011,
            CloseCode::Restarting => 1012,
            CloseCode::TryAgainLater => 1013,
        }
    }
}

/// Why the server ends a WebSocket session: one table of close code, reason
/// and the ending it is counted as in `/metrics`. Whether a client should come
/// back is what the code says ([`CloseCode`]'s table; 1008 `token expired`:
/// with a fresh token), so it is not a field of its own that nobody reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Disconnect {
    pub code: CloseCode,
    pub reason: &'static str,
    pub ending: Ending,
}

impl Disconnect {
    /// The client closed; we answer its close.
    pub const BYE: Disconnect = Disconnect { code: CloseCode::Normal, reason: "bye", ending: Ending::Normal };
    pub const SHUTDOWN: Disconnect =
        Disconnect { code: CloseCode::Restarting, reason: "server restarting", ending: Ending::Shutdown };
    /// An operator cut the page's connections (the dashboard's "drop connections").
    pub const DROPPED: Disconnect = Disconnect {
        code: CloseCode::Restarting,
        reason: "dropped from the dashboard; reconnect",

        ending: Ending::Dropped,
    };
    /// Its queue overflowed: the client cannot keep up with the stream.
    pub const TOO_SLOW: Disconnect = Disconnect {
        code: CloseCode::TryAgainLater,
        reason: "too slow to keep up; resume from your cursor",

        ending: Ending::Slow,
    };
    /// Pings went unanswered: the peer or the path to it is gone or stalled.
    /// Not 1000: the client did nothing wrong and should come back, after a
    /// backoff, as from any other path that cannot keep up.
    pub const NO_PONG: Disconnect =
        Disconnect { code: CloseCode::TryAgainLater, reason: "no pong in time", ending: Ending::NoPong };
    pub const TOO_BIG: Disconnect =
        Disconnect { code: CloseCode::TooBig, reason: "frame too big", ending: Ending::TooBig };
    pub const PROTOCOL: Disconnect =
        Disconnect { code: CloseCode::ProtocolError, reason: "protocol error", ending: Ending::ProtocolError };
    pub const HUB_FAILURE: Disconnect =
        Disconnect { code: CloseCode::Internal, reason: "hub failure", ending: Ending::HubFailure };
    /// A frame could not be written within `--write-timeout`: the client is
    /// too slow to read (counted in `slow_disconnects`).
    pub const WRITE_TIMEOUT: Disconnect = Disconnect {
        code: CloseCode::TryAgainLater,
        reason: "too slow to read; resume from your cursor",

        ending: Ending::WriteTimeout,
    };
    /// The access token reached its `exp` (API.md v1.1): come back with a fresh one.
    pub const TOKEN_EXPIRED: Disconnect =
        Disconnect { code: CloseCode::Policy, reason: "token expired", ending: Ending::TokenExpired };
    /// A fragmented message did not end within `--request-timeout` of its
    /// first fragment: its parts are not held any longer.
    pub const UNFINISHED: Disconnect = Disconnect {
        code: CloseCode::Policy,
        reason: "fragmented message not finished in time",

        ending: Ending::Unfinished,
    };
    /// A text frame was not valid UTF-8 (RFC 6455 wants 1007).
    pub const INVALID_UTF8: Disconnect =
        Disconnect { code: CloseCode::InvalidData, reason: "text frame is not UTF-8", ending: Ending::InvalidUtf8 };
}

/// A frame from a WebSocket client, after the envelope (`type`, `ref`) was read.
#[derive(Debug)]
pub enum ClientFrame {
    Subscribe { channels: Vec<ChannelName>, cursor: Option<String> },
    Unsubscribe { channels: Vec<ChannelName> },
    Publish { channel: ChannelName, data: Box<RawValue>, idempotency_key: Option<IdempotencyKey> },
    Ping,
}

/// A client frame that could not be understood, with the `ref` to echo if any.
#[derive(Debug)]
pub struct FrameError {
    pub error: AppError,
    pub reference: Option<Value>,
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "type")]
    kind: Option<Value>,
    #[serde(rename = "ref")]
    reference: Option<Value>,
    channels: Option<Value>,
    channel: Option<Value>,
    cursor: Option<Value>,
    idempotency_key: Option<Value>,
    /// `Some` whenever the field is present, `null` included.
    #[serde(default, deserialize_with = "present")]
    data: Option<Box<RawValue>>,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Box<RawValue>>, D::Error> {
    Box::<RawValue>::deserialize(d).map(Some)
}

impl ClientFrame {
    /// Parses a text frame. The `ref`, when present, is returned either way so
    /// that every answer can carry it.
    /// A `subscribe` or `unsubscribe` naming more than `max_channels`
    /// channels is refused.
    pub fn parse(text: &str, max_channels: usize) -> (Option<Value>, Result<ClientFrame, FrameError>) {
        let envelope: Envelope = match serde_json::from_str(text) {
            Ok(e) => e,
            Err(e) => {
                // Valid JSON of the wrong shape (a duplicate key, say) still
                // gets its `ref` back if it has one.
                let lenient = serde_json::from_str::<serde_json::Map<String, Value>>(text).ok();
                let reference = lenient.and_then(|mut map| map.remove("ref")).filter(|r| !r.is_null());
                let code = if serde_json::from_str::<&RawValue>(text).is_ok() {
                    ErrorCode::BadRequest
                } else {
                    ErrorCode::BadJson
                };
                let error = AppError::new(code, format!("frame is not a valid JSON object: {e}"));
                return Self::answer(reference, Err(error));
            }
        };
        let reference = envelope.reference.clone().filter(|r| !r.is_null());
        Self::answer(reference, Self::from_envelope(envelope, max_channels))
    }

    /// Pairs the outcome with the `ref` to echo, unless that `ref` is not one
    /// to echo: then the frame is refused whatever it was, without a `ref`.
    fn answer(
        reference: Option<Value>,
        result: Result<ClientFrame, AppError>,
    ) -> (Option<Value>, Result<ClientFrame, FrameError>) {
        if reference.as_ref().is_some_and(|r| !valid_ref(r)) {
            let message = format!("\"ref\" must be a string or number of at most {MAX_REF} bytes");
            let error = AppError::bad_request(message).rejected_by(Rejection::Ref);
            return (None, Err(FrameError { error, reference: None }));
        }
        let result = result.map_err(|error| FrameError { error, reference: reference.clone() });
        (reference, result)
    }

    fn from_envelope(e: Envelope, max_channels: usize) -> Result<ClientFrame, AppError> {
        let bad = |message: &str| AppError::bad_request(message);
        match e.kind.as_ref().and_then(Value::as_str) {
            Some("subscribe") => {
                let channels = channel_list(e.channels, max_channels)?;
                let cursor = match e.cursor {
                    None | Some(Value::Null) => None,
                    Some(Value::String(s)) => Some(s),
                    Some(_) => return Err(AppError::new(ErrorCode::BadCursor, "cursor must be a string")),
                };
                Ok(ClientFrame::Subscribe { channels, cursor })
            }
            Some("unsubscribe") => Ok(ClientFrame::Unsubscribe { channels: channel_list(e.channels, max_channels)? }),
            Some("publish") => {
                let channel = match e.channel {
                    Some(Value::String(s)) => s.parse()?,
                    _ => return Err(bad("publish needs a \"channel\" string")),
                };
                let data = e.data.ok_or_else(|| bad("publish needs \"data\""))?;
                crate::message::check_data(&data)?;
                let idempotency_key = match e.idempotency_key {
                    None | Some(Value::Null) => None,
                    Some(Value::String(key)) => Some(key.parse()?),
                    Some(_) => return Err(bad("\"idempotency_key\" must be a string")),
                };
                Ok(ClientFrame::Publish { channel, data, idempotency_key })
            }
            Some("ping") => Ok(ClientFrame::Ping),
            Some(other) => {
                Err(bad(&format!("unknown frame type {other:?}: expected subscribe, unsubscribe, publish or ping")))
            }
            None => Err(bad("frame needs a \"type\" string")),
        }
    }
}

fn channel_list(value: Option<Value>, max: usize) -> Result<Vec<ChannelName>, AppError> {
    let Some(Value::Array(items)) = value else {
        return Err(AppError::bad_request("\"channels\" must be an array of channel names"));
    };
    if items.is_empty() {
        return Err(AppError::bad_request("\"channels\" is empty"));
    }
    let not_a_string = || ParseError::new(Invalid::Channel, "channel names are strings".into());
    let channels = ChannelName::collect_list(items, max, |item| match item {
        Value::String(name) => name.parse(),
        _ => Err(not_a_string()),
    })?;
    Ok(channels)
}

/// Longest `ref` a client may send (API.md v1.1): its JSON text, in bytes.
pub const MAX_REF: usize = 128;

/// A `ref` is a string or a number of at most [`MAX_REF`] bytes.
fn valid_ref(reference: &Value) -> bool {
    match reference {
        Value::String(s) => s.len() <= MAX_REF,
        Value::Number(n) => n.to_string().len() <= MAX_REF,
        _ => false,
    }
}

/// Frames the server sends besides `message` and `reset` (which are encoded
/// in [`crate::message`]).
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame<'a> {
    Welcome {
        session: &'a str,
        heartbeat_ms: u64,
    },
    Subscribed {
        channel: &'a ChannelName,
        epoch: &'a Epoch,
        seq: u64,
    },
    Ack {
        #[serde(rename = "ref")]
        reference: &'a Value,
        #[serde(skip_serializing_if = "Option::is_none")]
        channel: Option<&'a ChannelName>,
        #[serde(skip_serializing_if = "Option::is_none")]
        seq: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        ts: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        epoch: Option<&'a Epoch>,
    },
    Pong {
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<&'a Value>,
    },
    Error {
        code: ErrorCode,
        message: &'a str,
        #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
        reference: Option<&'a Value>,
    },
}

impl ServerFrame<'_> {
    pub fn to_json(&self) -> String {
        // unwrap: these frames hold only strings, numbers and JSON values.
        serde_json::to_string(self).unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> (Option<Value>, Result<ClientFrame, FrameError>) {
        ClientFrame::parse(text, 64)
    }

    #[test]
    fn parses_each_frame_type() {
        let (r, f) = parse(r#"{"type":"subscribe","channels":["news","a"],"cursor":"news:7:k3j2","ref":"1"}"#);
        assert_eq!(r, Some(Value::from("1")));
        assert!(
            matches!(f, Ok(ClientFrame::Subscribe { channels, cursor: Some(c) }) if channels.len() == 2 && c == "news:7:k3j2")
        );
        let (_, f) = parse(r#"{"type":"publish","channel":"news","data":{"text":"hi"},"ref":3}"#);
        assert!(matches!(f, Ok(ClientFrame::Publish { data, .. }) if data.get() == r#"{"text":"hi"}"#));
        assert!(matches!(parse(r#"{"type":"ping"}"#), (None, Ok(ClientFrame::Ping))));
        let (_, f) = parse(r#"{"type":"publish","channel":"n","data":null}"#);
        assert!(matches!(f, Ok(ClientFrame::Publish { data, .. }) if data.get() == "null"), "null is data");
        assert!(matches!(parse(r#"{"type":"unsubscribe","channels":["x"]}"#).1, Ok(ClientFrame::Unsubscribe { .. })));
    }

    #[test]
    fn bad_frames_get_codes_and_keep_ref() {
        let code = |text: &str| ClientFrame::parse(text, 64).1.unwrap_err().error.code;
        assert_eq!(code("{not json"), ErrorCode::BadJson);
        assert_eq!(code("[1,2]"), ErrorCode::BadRequest);
        assert_eq!(code(r#"{"type":"dance"}"#), ErrorCode::BadRequest);
        assert_eq!(code(r#"{"type":"subscribe","channels":["bad name"]}"#), ErrorCode::BadChannel);
        assert_eq!(code(r#"{"type":"subscribe","channels":"a"}"#), ErrorCode::BadRequest);
        assert_eq!(code(r#"{"type":"publish","channel":"a"}"#), ErrorCode::BadRequest);
        let (r, f) = parse(r#"{"type":"dance","ref":"x7"}"#);
        assert_eq!(r, Some(Value::from("x7")));
        assert_eq!(f.unwrap_err().reference, Some(Value::from("x7")));
        let duplicate = parse(r#"{"type":"ping","type":"ping","ref":"dup"}"#).1.unwrap_err();
        assert_eq!((duplicate.error.code, duplicate.reference), (ErrorCode::BadRequest, Some(Value::from("dup"))));
    }

    proptest::proptest! {
        /// Any text, JSON-looking or not, gets a frame or an API.md error
        /// code, and a `ref` is echoed only when it is a valid one.
        #[test]
        fn any_text_frame_parses_or_gets_an_error_code(
            text in proptest::prop_oneof![
                ".{0,200}",
                r#"\{"type":"(subscribe|publish|ping|unsubscribe|x)","(channels|channel|ref|data|cursor|idempotency_key)":.{0,40}\}"#,
            ],
        ) {
            let (reference, frame) = parse(&text);
            if let Some(r) = &reference {
                proptest::prop_assert!(valid_ref(r));
            }
            if let Err(e) = frame {
                proptest::prop_assert!(!e.error.message.is_empty());
                proptest::prop_assert!(e.error.code != ErrorCode::Unavailable);
            }
        }
    }

    #[test]
    fn server_frames_encode() {
        let r = Value::from("4");
        assert_eq!(ServerFrame::Pong { reference: Some(&r) }.to_json(), r#"{"type":"pong","ref":"4"}"#);
        let e = ServerFrame::Error { code: ErrorCode::BadJson, message: "m", reference: None };
        assert_eq!(e.to_json(), r#"{"type":"error","code":"bad_json","message":"m"}"#);
    }
}
