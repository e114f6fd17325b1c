//! What a client asks the server for (API.md v1.2), and how it reads the
//! answer: compression (WebSocket offers permessage-deflate and HTTP
//! clients send `Accept-Encoding: gzip`, as every browser does) and
//! encoding (MessagePack: the `pushwire.msgpack` subprotocol, or
//! `Accept: application/msgpack` on polls; SSE is text only). A [`Variant`] is
//! one choice of both.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Transport;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    On,
    Off,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    Json,
    Msgpack,
}

/// One choice of both (the default: uncompressed JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Variant {
    pub compression: Compression,
    pub encoding: Encoding,
}

/// The WebSocket subprotocol asking for MessagePack.
pub const MSGPACK_PROTOCOL: &str = "pushwire.msgpack";
/// The media type of MessagePack answers.
pub const MSGPACK_TYPE: &str = "application/msgpack";

impl Default for Variant {
    fn default() -> Variant {
        Variant { compression: Compression::Off, encoding: Encoding::Json }
    }
}

impl Compression {
    pub fn name(self) -> &'static str {
        match self {
            Compression::On => "on",
            Compression::Off => "off",
        }
    }
}

impl Encoding {
    pub fn name(self) -> &'static str {
        match self {
            Encoding::Json => "json",
            Encoding::Msgpack => "msgpack",
        }
    }

    /// Whether `transport` can carry this encoding: SSE is a text protocol.
    pub fn carries(self, transport: Transport) -> bool {
        !(self == Encoding::Msgpack && transport == Transport::Sse)
    }

    /// Reads one frame or answer in this encoding.
    pub fn decode<T: DeserializeOwned>(self, bytes: &[u8]) -> Result<T, String> {
        match self {
            Encoding::Json => serde_json::from_slice(bytes).map_err(|e| e.to_string()),
            Encoding::Msgpack => rmp_serde::from_slice(bytes).map_err(|e| e.to_string()),
        }
    }
}

impl Variant {
    /// Every combination of the lists given, each once, compression first.
    pub fn all(compression: &[Compression], encoding: &[Encoding]) -> Vec<Variant> {
        let mut out: Vec<Variant> = Vec::new();
        for &compression in compression {
            for &encoding in encoding {
                let variant = Variant { compression, encoding };
                if !out.contains(&variant) {
                    out.push(variant);
                }
            }
        }
        out
    }

    /// `compression on, json`, for headings.
    pub fn label(self) -> String {
        format!("compression {}, {}", self.compression.name(), self.encoding.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize, PartialEq)]
    struct Frame {
        #[serde(rename = "type")]
        kind: Kind,
        #[serde(default)]
        seq: u64,
    }

    #[derive(Debug, serde::Deserialize, PartialEq)]
    #[serde(rename_all = "lowercase")]
    enum Kind {
        Message,
        #[serde(other)]
        Other,
    }

    #[test]
    fn msgpack_frames_read_like_json_ones() {
        // What a v1.2 server sends: the JSON object as a MessagePack map.
        let json =
            serde_json::json!({"type": "message", "channel": "c", "seq": 7, "ts": 1, "data": {"a": [1, 2.5, null]}});
        let packed = rmp_serde::to_vec_named(&json).unwrap();
        let frame: Frame = Encoding::Msgpack.decode(&packed).unwrap();
        assert_eq!(frame, Frame { kind: Kind::Message, seq: 7 });
        assert_eq!(Encoding::Json.decode::<Frame>(json.to_string().as_bytes()).unwrap(), frame);
        let other = rmp_serde::to_vec_named(&serde_json::json!({"type": "welcome"})).unwrap();
        assert_eq!(Encoding::Msgpack.decode::<Frame>(&other).unwrap(), Frame { kind: Kind::Other, seq: 0 });
        assert!(Encoding::Msgpack.decode::<Frame>(b"{\"type\":\"message\"}").is_err());
    }

    #[test]
    fn variants_are_every_combination_once() {
        let all =
            Variant::all(&[Compression::On, Compression::Off, Compression::On], &[Encoding::Json, Encoding::Msgpack]);
        assert_eq!(all.len(), 4);
        assert_eq!(all[1], Variant { compression: Compression::On, encoding: Encoding::Msgpack });
        assert!(!Encoding::Msgpack.carries(Transport::Sse) && Encoding::Json.carries(Transport::Sse));
    }
}
