//! `--payload-kind`: the `data` every publish carries. What compresses, and how
//! well, depends on it: `repetitive` is a notification as applications send
//! them (the same keys in every item, URLs and names that differ a little),
//! `random` is incompressible (random base64 in a JSON string), `FILE` is a
//! JSON file's contents, sent unchanged. The first two are `--payload` bytes
//! long and carry the message's number `n`, so no two bodies are the same.

use std::fmt::Write as _;
use std::path::Path;

use bytes::Bytes;

/// What each published body is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PayloadKind {
    Repetitive,
    Random,
    /// A JSON file's contents (checked to be JSON when the flag is read).
    File {
        path: String,
        body: Bytes,
    },
}

/// Parses `repetitive`, `random`, or the path of a JSON file.
pub fn parse(s: &str) -> Result<PayloadKind, String> {
    match s {
        "repetitive" => Ok(PayloadKind::Repetitive),
        "random" => Ok(PayloadKind::Random),
        path => {
            let body = std::fs::read(Path::new(path))
                .map_err(|e| format!("expected repetitive, random or a JSON file; cannot read '{path}': {e}"))?;
            serde_json::from_slice::<serde::de::IgnoredAny>(&body).map_err(|e| format!("'{path}' is not JSON: {e}"))?;
            Ok(PayloadKind::File { path: path.to_string(), body: body.into() })
        }
    }
}

impl PayloadKind {
    /// Its name in the report: `repetitive`, `random` or `file:PATH`.
    pub fn name(&self) -> String {
        match self {
            PayloadKind::Repetitive => "repetitive".into(),
            PayloadKind::Random => "random".into(),
            PayloadKind::File { path, .. } => format!("file:{path}"),
        }
    }

    /// The body of message `n`: `size` bytes (or as short as it gets), a file's as it is.
    pub fn body(&self, n: u64, size: usize) -> Bytes {
        match self {
            PayloadKind::Repetitive => repetitive(n, size),
            PayloadKind::Random => random(n, size),
            PayloadKind::File { body, .. } => body.clone(),
        }
    }

    /// Its size in bytes, as the report states it.
    pub fn size(&self, size: usize) -> usize {
        match self {
            PayloadKind::File { body, .. } => body.len(),
            _ => size,
        }
    }
}

const ACTIONS: [&str; 4] = ["commented", "mentioned you", "assigned you", "approved"];
const TITLES: [&str; 4] = [
    "Reconnect loop after the proxy drops idle connections",
    "Dashboard shows stale counters after a restart",
    "Add MessagePack to the long-poll answer",
    "Latency spikes when a subscriber stalls",
];

/// A notification batch: items with the same keys and similar values, as a
/// feed or an inbox sends them, then a `note` that pads to `size`.
fn repetitive(n: u64, size: usize) -> Bytes {
    let mut rng = fastrand::Rng::with_seed(n);
    let mut body = format!("{{\"n\":{n},\"type\":\"notifications\",\"items\":[");
    let tail = "],\"note\":\"\"}";
    let mut item = String::new();
    for i in 0.. {
        let user = rng.u32(1000..10_000);
        let issue = rng.u32(100..2000);
        item.clear();
        let _ = write!(
            item,
            "{}{{\"id\":\"ntf_{n}_{i}\",\"action\":\"{}\",\"actor\":{{\"id\":{user},\"login\":\"user{user}\",\
             \"avatar\":\"https://avatars.example.com/u/{user}?s=64\"}},\"subject\":{{\"type\":\"issue\",\
             \"title\":\"{}\",\"url\":\"https://example.com/acme/pushwire/issues/{issue}\"}},\"unread\":{},\
             \"created_at\":\"2026-12-07T14:{:02}:{:02}Z\"}}",
            if i == 0 { "" } else { "," },
            ACTIONS[rng.usize(..ACTIONS.len())],
            TITLES[rng.usize(..TITLES.len())],
            rng.bool(),
            rng.u8(..60),
            rng.u8(..60),
        );
        if body.len() + item.len() + tail.len() > size {
            break;
        }
        body.push_str(&item);
    }
    body.push_str("],\"note\":\"");
    const WORDS: &str = "You have unread notifications in acme/pushwire. ";
    let pad = size.saturating_sub(body.len() + 2);
    body.extend(WORDS.chars().cycle().take(pad));
    body.push_str("\"}");
    Bytes::from(body)
}

/// Random base64 characters in a string: nothing for a compressor to find.
fn random(n: u64, size: usize) -> Bytes {
    const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut body = format!("{{\"n\":{n},\"blob\":\"");
    let pad = size.saturating_sub(body.len() + 2);
    body.extend((0..pad).map(|_| BASE64[fastrand::usize(..64)] as char));
    body.push_str("\"}");
    Bytes::from(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_json_of_the_asked_size_and_numbered() {
        for kind in [PayloadKind::Repetitive, PayloadKind::Random] {
            for (n, size) in [(1, 100), (12345, 256), (7, 1024), (99, 100_000)] {
                let body = kind.body(n, size);
                assert_eq!(body.len(), size, "{kind:?} {size}");
                let value: serde_json::Value = serde_json::from_slice(&body).unwrap();
                assert_eq!(value["n"], n, "{kind:?}");
            }
            // Too small to be that size: as short as it gets, still JSON.
            let body = kind.body(3, 5);
            assert!(serde_json::from_slice::<serde_json::Value>(&body).is_ok(), "{kind:?}: {body:?}");
        }
        let items = serde_json::from_slice::<serde_json::Value>(&repetitive(1, 1024)).unwrap()["items"].clone();
        assert!(items.as_array().unwrap().len() >= 2, "a 1 KB batch holds several items: {items}");
    }

    #[test]
    fn a_payload_is_a_kind_or_a_json_file() {
        assert_eq!(parse("repetitive"), Ok(PayloadKind::Repetitive));
        assert_eq!(parse("random"), Ok(PayloadKind::Random));
        assert!(parse("/no/such/file.json").unwrap_err().contains("cannot read '/no/such/file.json'"));
        let path = std::env::temp_dir().join(format!("pushwire-bench-payload-{}.json", std::process::id()));
        std::fs::write(&path, b"{\"a\":[1,2]}").unwrap();
        let kind = parse(path.to_str().unwrap()).unwrap();
        assert_eq!(&kind.body(1, 10)[..], b"{\"a\":[1,2]}");
        assert_eq!(kind.size(10), 11);
        std::fs::write(&path, b"{\"a\":").unwrap();
        assert!(parse(path.to_str().unwrap()).unwrap_err().contains("is not JSON"));
        let _ = std::fs::remove_file(path);
    }
}
