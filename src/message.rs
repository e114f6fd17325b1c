//! The values every transport carries: channel names, epochs, cursors and
//! messages. A [`Message`] is encoded to JSON once, when it enters the
//! process, and that encoding is shared by every subscriber.

use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};
use bytestring::ByteString;
use serde::{Serialize, Serializer};
use serde_json::value::RawValue;

use crate::encoding::{Format, deflate, msgpack};

/// A channel name: `^[A-Za-z0-9_.-]{1,64}$`. Cloning is cheap (shared).
#[derive(Clone, PartialOrd, Ord)]
pub struct ChannelName(Arc<str>);

/// Equality of a shared text by pointer first, then by text; hashing by text.
macro_rules! eq_by_pointer_first {
    ($name:ident) => {
        impl PartialEq for $name {
            fn eq(&self, other: &$name) -> bool {
                Arc::ptr_eq(&self.0, &other.0) || self.0 == other.0
            }
        }

        impl Eq for $name {}

        impl std::hash::Hash for $name {
            fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
                self.0.hash(state);
            }
        }
    };
}

// A connection compares each live message's channel with its own: when they
// share one name (the hub's), without reading the text.
eq_by_pointer_first!(ChannelName);

/// What was wrong with a channel name, cursor or epoch, said for the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ParseError {
    pub kind: Invalid,
    pub message: String,
}

/// Which kind of value did not parse (a bad channel inside a cursor is a bad cursor).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    Channel,
    Cursor,
    Epoch,
    /// A channel list longer than allowed.
    TooMany,
    IdempotencyKey,
    /// Published data that one of the encodings could not carry the same.
    Data,
}

impl ParseError {
    pub fn new(kind: Invalid, message: String) -> ParseError {
        ParseError { kind, message }
    }

    fn within_cursor(self) -> ParseError {
        ParseError { kind: Invalid::Cursor, ..self }
    }
}

impl ChannelName {
    pub const MAX_LEN: usize = 64;

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether both are the same shared name (not only equal).
    pub fn shares(&self, other: &ChannelName) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// Parses a comma-separated list such as `a,b`, in order, without
    /// duplicates, refusing it as soon as it names more than `max` channels
    /// (so a huge list costs no more than its first `max` names).
    pub fn parse_list(list: &str, max: usize) -> Result<Vec<ChannelName>, ParseError> {
        Self::collect_list(list.split(','), max, |name| name.parse())
    }

    /// Collects channel names, in order, without duplicates, refusing more
    /// than `max` distinct ones: in time linear in what it reads.
    pub fn collect_list<T>(
        items: impl IntoIterator<Item = T>,
        max: usize,
        parse: impl Fn(T) -> Result<ChannelName, ParseError>,
    ) -> Result<Vec<ChannelName>, ParseError> {
        let mut seen = std::collections::HashSet::new();
        let mut channels = Vec::new();
        for item in items {
            let channel = parse(item)?;
            if seen.insert(channel.clone()) {
                if channels.len() == max {
                    return Err(ParseError::new(Invalid::TooMany, format!("at most {max} channels per request")));
                }
                channels.push(channel);
            }
        }
        Ok(channels)
    }
}

impl FromStr for ChannelName {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, ParseError> {
        let valid = !s.is_empty()
            && s.len() <= Self::MAX_LEN
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if valid {
            Ok(ChannelName(s.into()))
        } else {
            Err(ParseError::new(
                Invalid::Channel,
                format!("invalid channel name {:?}: expected 1 to 64 of A-Z a-z 0-9 _ . -", truncate(s, 80)),
            ))
        }
    }
}

impl fmt::Display for ChannelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ChannelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl Serialize for ChannelName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// An idempotency key of a publish: `[A-Za-z0-9_.:-]{1,64}` (API.md v1.1).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(Arc<str>);

impl IdempotencyKey {
    pub const MAX_LEN: usize = 64;

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for IdempotencyKey {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, ParseError> {
        let valid = !s.is_empty()
            && s.len() <= Self::MAX_LEN
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'-'));
        if valid {
            Ok(IdempotencyKey(s.into()))
        } else {
            Err(ParseError::new(
                Invalid::IdempotencyKey,
                format!("invalid idempotency key {:?}: expected 1 to 64 of A-Z a-z 0-9 _ . : -", truncate(s, 80)),
            ))
        }
    }
}

impl fmt::Debug for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

/// A channel's epoch: `[A-Za-z0-9]{1,16}`. It changes whenever the hub loses
/// the channel's sequence, so a cursor from an older epoch cannot be trusted.
#[derive(Clone)]
pub struct Epoch(Arc<str>);

// A live message and the position it is checked against usually share one
// epoch: compared without reading the text.
eq_by_pointer_first!(Epoch);

impl Epoch {
    pub const MAX_LEN: usize = 16;

    /// A fresh random epoch (8 alphanumeric characters).
    pub fn random() -> Epoch {
        let s: String = std::iter::repeat_with(fastrand::alphanumeric).take(8).collect();
        Epoch(s.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Epoch {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, ParseError> {
        if !s.is_empty() && s.len() <= Self::MAX_LEN && s.bytes().all(|b| b.is_ascii_alphanumeric()) {
            Ok(Epoch(s.into()))
        } else {
            Err(ParseError::new(
                Invalid::Epoch,
                format!("invalid epoch {:?}: expected 1 to 16 of A-Z a-z 0-9", truncate(s, 40)),
            ))
        }
    }
}

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl Serialize for Epoch {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

/// One entry of a cursor: "I have everything of `channel` up to and including
/// `seq`, in `epoch`". A missing epoch means "whatever the current one is".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub channel: ChannelName,
    pub seq: u64,
    pub epoch: Option<Epoch>,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.channel, self.seq)?;
        if let Some(epoch) = &self.epoch {
            write!(f, ":{epoch}")?;
        }
        Ok(())
    }
}

/// A resume position over several channels: `channel:seq[:epoch]` entries
/// joined by commas. When a channel appears twice, the last entry counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cursor(Vec<Position>);

impl Cursor {
    pub fn new(positions: Vec<Position>) -> Cursor {
        Cursor(positions)
    }

    pub fn get(&self, channel: &ChannelName) -> Option<&Position> {
        self.0.iter().rev().find(|p| &p.channel == channel)
    }

    pub fn positions(&self) -> &[Position] {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromStr for Cursor {
    type Err = ParseError;

    /// An empty string is an empty cursor (no resume position).
    fn from_str(s: &str) -> Result<Self, ParseError> {
        if s.is_empty() {
            return Ok(Cursor::default());
        }
        let invalid = |message: String| ParseError::new(Invalid::Cursor, message);
        s.split(',')
            .map(|entry| {
                let mut parts = entry.split(':');
                let (Some(channel), Some(seq)) = (parts.next(), parts.next()) else {
                    let entry = truncate(entry, 80);
                    return Err(invalid(format!("invalid cursor entry {entry:?}: expected channel:seq[:epoch]")));
                };
                let epoch = parts.next().map(str::parse).transpose()?;
                if parts.next().is_some() {
                    return Err(invalid(format!("invalid cursor entry {:?}: too many ':'", truncate(entry, 80))));
                }
                let seq =
                    parse_seq(seq).ok_or_else(|| invalid(format!("invalid seq {:?} in cursor", truncate(seq, 40))))?;
                Ok(Position { channel: channel.parse()?, seq, epoch })
            })
            .collect::<Result<_, _>>()
            .map(Cursor)
            .map_err(ParseError::within_cursor)
    }
}

/// Only plain decimal digits: `u64::from_str` would also take a leading `+`.
fn parse_seq(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, position) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{position}")?;
        }
        Ok(())
    }
}

/// A published message, as every transport delivers it. Built once per
/// publish (or once per arrival from another instance) and shared; a copy
/// shares the encoding.
#[derive(Clone)]
pub struct Message {
    pub channel: ChannelName,
    pub seq: u64,
    /// Server time of the publish, microseconds since the Unix epoch.
    pub ts: u64,
    pub epoch: Epoch,
    /// `{"type":"message",...}`, the exact bytes of a WebSocket text frame
    /// and of a poll answer's entry.
    json: ByteString,
    /// The SSE event for a stream subscribed to this channel alone, whose
    /// `id:` is then the same for every such subscriber.
    sse_single: OnceLock<Bytes>,
    /// v1.2's other forms, each made on first use and shared: most messages
    /// of a JSON-only, uncompressed server never make the box.
    forms: OnceLock<Box<Forms>>,
}

/// A message's encodings besides its JSON, each made once.
#[derive(Default, Clone)]
struct Forms {
    msgpack: OnceLock<Bytes>,
    /// permessage-deflate payloads, by [`Format`].
    deflated: [OnceLock<Bytes>; 2],
    /// The single-channel SSE event, deflated for gzip streams.
    sse_single: OnceLock<Bytes>,
    /// `event: message` and `data:` of an event, without its `id:`, plain and
    /// deflated: gzip streams of several channels add their own `id:` after it.
    sse_body: OnceLock<(Bytes, Bytes)>,
}

impl Message {
    /// `data` must be valid JSON; it is kept as given, minus insignificant
    /// whitespace (so that one SSE `data:` line can carry it).
    pub fn new(channel: ChannelName, seq: u64, ts: u64, epoch: Epoch, data: &RawValue) -> Message {
        let data = compact_json(data.get());
        let json = format!(r#"{{"type":"message","channel":"{channel}","seq":{seq},"ts":{ts},"data":{data}}}"#);
        Message { channel, seq, ts, epoch, json: json.into(), sse_single: OnceLock::new(), forms: OnceLock::new() }
    }

    /// A message whose encoding was made elsewhere (by the Redis hub's
    /// publish script, byte for byte the same as [`Message::new`]'s).
    pub fn from_encoded(channel: ChannelName, seq: u64, ts: u64, epoch: Epoch, json: String) -> Message {
        Message { channel, seq, ts, epoch, json: json.into(), sse_single: OnceLock::new(), forms: OnceLock::new() }
    }

    /// Compact JSON, as stored in a message's encoding.
    pub fn compact(data: &RawValue) -> std::borrow::Cow<'_, str> {
        compact_json(data.get())
    }

    pub fn json(&self) -> &ByteString {
        &self.json
    }

    /// The published `data`, as a JSON text.
    pub fn data(&self) -> &str {
        // The encoding always ends with `"data":` + data + `}`.
        let start = self.json.find(r#""data":"#).map(|i| i + 7).unwrap_or(0);
        &self.json[start..self.json.len() - 1]
    }

    pub fn position(&self) -> Position {
        Position { channel: self.channel.clone(), seq: self.seq, epoch: Some(self.epoch.clone()) }
    }

    /// The SSE event for a single-channel stream, encoded on first use.
    pub fn sse_single(&self) -> Bytes {
        self.sse_single.get_or_init(|| sse_event("message", Some(&self.position().to_string()), &self.json)).clone()
    }

    fn forms(&self) -> &Forms {
        self.forms.get_or_init(Box::default)
    }

    /// The message as MessagePack, encoded on first use.
    pub fn msgpack(&self) -> &Bytes {
        self.forms().msgpack.get_or_init(|| {
            let packed = msgpack::from_json(&self.json).unwrap_or_else(|e| {
                // Publish refuses what MessagePack cannot carry; a message
                // from an older instance might still hold it.
                tracing::warn!(channel = %self.channel, seq = self.seq, error = %e, "data sent as nil in MessagePack");
                let json = format!(
                    r#"{{"type":"message","channel":"{}","seq":{},"ts":{},"data":null}}"#,
                    self.channel, self.seq, self.ts
                );
                // unwrap: valid JSON of strings and integers.
                msgpack::from_json(&json).unwrap()
            });
            Bytes::from(packed)
        })
    }

    /// The message in `format`.
    pub fn encoded(&self, format: Format) -> &[u8] {
        match format {
            Format::Json => self.json.as_bytes(),
            Format::MsgPack => self.msgpack(),
        }
    }

    /// The permessage-deflate payload of the message in `format`, compressed
    /// once for every connection.
    pub fn deflated(&self, format: Format) -> Bytes {
        let slot = &self.forms().deflated[format as usize];
        slot.get_or_init(|| Bytes::from(deflate::permessage(self.encoded(format)))).clone()
    }

    /// [`Message::sse_single`] deflated on its own, for gzip streams.
    pub fn sse_single_deflated(&self) -> Bytes {
        self.forms().sse_single.get_or_init(|| Bytes::from(deflate::deflate(&self.sse_single()))).clone()
    }

    /// The event without its `id:` line, plain and deflated, for gzip
    /// streams of several channels (which add their own `id:` after it).
    pub fn sse_body(&self) -> &(Bytes, Bytes) {
        self.forms().sse_body.get_or_init(|| {
            let plain = sse_event("message", None, &self.json);
            // The blank line that ends the event comes after the stream's own `id:`.
            let plain = plain.slice(..plain.len() - 1);
            let deflated = Bytes::from(deflate::deflate(&plain));
            (plain, deflated)
        })
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("channel", &self.channel)
            .field("seq", &self.seq)
            .field("epoch", &self.epoch)
            .finish_non_exhaustive()
    }
}

/// Refuses published `data` that one of the encodings could not carry the
/// same: a number a float 64 cannot hold, such as `1e400` (API.md v1.2).
pub fn check_data(data: &RawValue) -> Result<(), ParseError> {
    msgpack::from_json(data.get())
        .map(drop)
        .map_err(|e| ParseError::new(Invalid::Data, format!("data cannot be published: {e}")))
}

/// Encodes one SSE event. `data` must hold no line break (all our JSON is compact).
pub fn sse_event(event: &str, id: Option<&str>, data: &str) -> Bytes {
    let mut buf = BytesMut::with_capacity(data.len() + id.map_or(0, str::len) + event.len() + 24);
    if let Some(id) = id {
        buf.put_slice(b"id: ");
        buf.put_slice(id.as_bytes());
        buf.put_u8(b'\n');
    }
    buf.put_slice(b"event: ");
    buf.put_slice(event.as_bytes());
    buf.put_slice(b"\ndata: ");
    buf.put_slice(data.as_bytes());
    buf.put_slice(b"\n\n");
    buf.freeze()
}

/// Why a resume could not be exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ResetReason {
    HistoryTrimmed,
    EpochChanged,
}

/// Tells a client that its position in `channel` was moved to `seq` in
/// `epoch`: everything it misses between is gone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename = "reset")]
pub struct Reset {
    pub channel: ChannelName,
    pub epoch: Epoch,
    pub seq: u64,
    pub reason: ResetReason,
}

/// Microseconds since the Unix epoch.
pub fn now_micros() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or(0)
}

/// Removes whitespace outside strings from a valid JSON text.
fn compact_json(raw: &str) -> std::borrow::Cow<'_, str> {
    let is_space = |c: char| matches!(c, ' ' | '\n' | '\r' | '\t');
    if !raw.contains(is_space) {
        return raw.into();
    }
    let mut out = String::with_capacity(raw.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in raw.chars() {
        if in_string {
            out.push(c);
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !is_space(c) {
            out.push(c);
        }
    }
    out.into()
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn channel_names() {
        for ok in ["demo", "a", "A-b_c.9", &"x".repeat(64)] {
            assert_eq!(ok.parse::<ChannelName>().unwrap().as_str(), ok);
        }
        for bad in ["", "a b", "a:b", "a,b", "é", &"x".repeat(65), "a/b"] {
            assert!(bad.parse::<ChannelName>().is_err(), "{bad:?} accepted");
        }
        let list = ChannelName::parse_list("a,b,a", 2).unwrap();
        assert_eq!(list.iter().map(ChannelName::as_str).collect::<Vec<_>>(), ["a", "b"]);
        assert!(ChannelName::parse_list("a,,b", 8).is_err());
        let too_many = ChannelName::parse_list("a,b,c,bad name", 2).unwrap_err();
        assert_eq!(too_many.kind, Invalid::TooMany, "refused at the third name, before the bad one");
    }

    #[test]
    fn cursor_parses_and_formats() {
        let c: Cursor = "demo:42:k3j2,news:7".parse().unwrap();
        assert_eq!(c.positions().len(), 2);
        let demo = c.get(&"demo".parse().unwrap()).unwrap();
        assert_eq!((demo.seq, demo.epoch.as_ref().unwrap().as_str()), (42, "k3j2"));
        assert_eq!(c.get(&"news".parse().unwrap()).unwrap().epoch, None);
        assert_eq!(c.to_string(), "demo:42:k3j2,news:7");
        assert!("".parse::<Cursor>().unwrap().is_empty());
        let last_wins: Cursor = "a:1,a:5".parse().unwrap();
        assert_eq!(last_wins.get(&"a".parse().unwrap()).unwrap().seq, 5);
    }

    #[test]
    fn malformed_cursors_are_refused() {
        for bad in [
            "demo",
            "demo:",
            ":1",
            "demo:-1",
            "demo:+1",
            "demo:1.5",
            "demo:1:",
            "demo:1:ab-c",
            "demo:1:abcdefghijklmnopq",
            "demo:1:e:x",
            "demo:1,",
            "bad name:1",
            "demo:99999999999999999999",
        ] {
            assert!(bad.parse::<Cursor>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn message_encoding_keeps_data() {
        let data = RawValue::from_string("{ \"b\": 1,\n \"a\": \"x y\\\" z\" }".into()).unwrap();
        let m = Message::new("demo".parse().unwrap(), 3, 17, "ep1".parse().unwrap(), &data);
        assert_eq!(
            m.json().as_ref() as &str,
            r#"{"type":"message","channel":"demo","seq":3,"ts":17,"data":{"b":1,"a":"x y\" z"}}"#
        );
        assert_eq!(m.data(), r#"{"b":1,"a":"x y\" z"}"#);
        let sse = m.sse_single();
        assert!(sse.starts_with(b"id: demo:3:ep1\nevent: message\ndata: {"));
        assert!(sse.ends_with(b"}\n\n"));
    }

    fn channel() -> impl Strategy<Value = String> {
        "[A-Za-z0-9_.-]{1,64}"
    }

    proptest! {
        #[test]
        fn cursor_roundtrips(entries in prop::collection::vec((channel(), any::<u64>(), prop::option::of("[A-Za-z0-9]{1,16}")), 1..6)) {
            let text = entries.iter().map(|(c, s, e)| match e {
                Some(e) => format!("{c}:{s}:{e}"),
                None => format!("{c}:{s}"),
            }).collect::<Vec<_>>().join(",");
            let cursor: Cursor = text.parse().unwrap();
            prop_assert_eq!(cursor.to_string(), text);
            prop_assert_eq!(cursor.positions().len(), entries.len());
        }

        #[test]
        fn cursor_parser_never_panics(s in ".{0,200}") {
            let _ = s.parse::<Cursor>();
        }

        #[test]
        fn client_input_parsers_never_panic_and_say_what_was_wrong(
            s in prop_oneof![".{0,300}", "[a-z0-9,:._-]{0,300}"],
            max in 1usize..80,
        ) {
            if let Err(e) = ChannelName::parse_list(&s, max) {
                prop_assert!(matches!(e.kind, Invalid::Channel | Invalid::TooMany), "{e:?}");
                prop_assert!(!e.message.is_empty());
            }
            if let Ok(list) = ChannelName::parse_list(&s, max) {
                prop_assert!(list.len() <= max);
            }
            if let Err(e) = s.parse::<Cursor>() {
                prop_assert_eq!(e.kind, Invalid::Cursor);
            }
            let _ = s.parse::<Epoch>();
            let _ = s.parse::<IdempotencyKey>();
        }

        #[test]
        fn compaction_preserves_the_value(v in proptest_json()) {
            let pretty = serde_json::to_string_pretty(&v).unwrap();
            let compact = compact_json(&pretty);
            let back: serde_json::Value = serde_json::from_str(&compact).unwrap();
            prop_assert_eq!(back, v);
            prop_assert!(!compact.contains('\n'));
        }
    }

    fn proptest_json() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            ".{0,12}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
                prop::collection::btree_map("[a-z \\n\"]{0,6}", inner, 0..4)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }
}
