//! MessagePack (API.md v1.2): the same objects as the JSON, for clients that
//! ask. JSON becomes MessagePack by transcoding (serde-transcode from
//! serde_json's reader into rmp-serde's writer: keys keep their order, a
//! number without fraction or exponent that fits i64 or u64 is an integer,
//! any other a float 64). MessagePack from clients becomes JSON through
//! rmp-serde, refusing what JSON cannot hold.

use serde_json::Value;

/// Deepest nesting read from a client: a frame of nested arrays cannot
/// exhaust the stack.
const MAX_DEPTH: usize = 128;

/// Why a value could not change encoding.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("not valid JSON for MessagePack: {0}")]
    Json(String),
    #[error("not valid MessagePack: {0}")]
    MsgPack(String),
    #[error("MessagePack that JSON cannot hold: {0}")]
    NotJson(&'static str),
}

/// A JSON text as MessagePack. Fails on invalid JSON and on a number that a
/// float 64 cannot hold (`1e400`), which v1.2 refuses at publish.
pub fn from_json(json: &str) -> Result<Vec<u8>, Error> {
    let mut out = Vec::with_capacity(json.len());
    let mut reader = serde_json::Deserializer::from_str(json);
    let mut writer = rmp_serde::Serializer::new(&mut out);
    serde_transcode::transcode(&mut reader, &mut writer).map_err(|e| Error::Json(e.to_string()))?;
    reader.end().map_err(|e| Error::Json(e.to_string()))?;
    Ok(out)
}

/// One MessagePack value (the whole of `bytes`) as JSON text. Map keys must
/// be strings; bin, ext, reserved markers, NaN and infinities are refused.
pub fn to_json(bytes: &[u8]) -> Result<String, Error> {
    let mut reader = rmp_serde::Deserializer::new(std::io::Cursor::new(bytes));
    reader.set_max_depth(MAX_DEPTH);
    let Strict(value) = serde::Deserialize::deserialize(&mut reader).map_err(|e| Error::MsgPack(e.to_string()))?;
    let read = reader.position() as usize;
    if read != bytes.len() {
        return Err(Error::MsgPack(format!("{} bytes after the value", bytes.len() - read)));
    }
    Ok(value.to_string())
}

/// A JSON value read from MessagePack, refusing what JSON has no equal for
/// (serde_json's own `Value` would turn NaN into null, and bin into an array).
struct Strict(Value);

impl<'de> serde::Deserialize<'de> for Strict {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Strict, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> serde::de::Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("nil, bool, a number, str, array or a map with str keys")
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }

    fn visit_i64<E>(self, i: i64) -> Result<Value, E> {
        Ok(Value::from(i))
    }

    fn visit_u64<E>(self, u: u64) -> Result<Value, E> {
        Ok(Value::from(u))
    }

    fn visit_f64<E: serde::de::Error>(self, f: f64) -> Result<Value, E> {
        serde_json::Number::from_f64(f).map(Value::Number).ok_or_else(|| E::custom("NaN or infinity"))
    }

    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.to_string()))
    }

    fn visit_string<E>(self, s: String) -> Result<Value, E> {
        Ok(Value::String(s))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        while let Some(Strict(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = serde_json::Map::new();
        while let Some((key, Strict(value))) = map.next_entry::<String, Strict>()? {
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

/// Writers for the few MessagePack headers pushwire puts around bytes it
/// already holds encoded (a poll answer around its messages).
pub mod write {
    pub fn map_len(out: &mut Vec<u8>, len: u32) {
        // unwrap: writing to a Vec cannot fail.
        rmp::encode::write_map_len(out, len).unwrap();
    }

    pub fn array_len(out: &mut Vec<u8>, len: u32) {
        rmp::encode::write_array_len(out, len).unwrap();
    }

    pub fn str(out: &mut Vec<u8>, s: &str) {
        rmp::encode::write_str(out, s).unwrap();
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn json_becomes_the_same_value_with_integers_kept_integers() {
        let json = r#"{"type":"message","seq":42,"ts":1763900000123456,"data":{"f":1.5,"e":1e2,"n":-3,"big":18446744073709551615,"s":"é","a":[true,null]}}"#;
        let packed = from_json(json).unwrap();
        let value = rmpv::decode::read_value(&mut &packed[..]).unwrap(); // an independent reader
        let map = value.as_map().unwrap();
        assert_eq!(map[0].0.as_str(), Some("type"), "keys keep their order");
        let data = &map[3].1;
        assert_eq!(data["f"], rmpv::Value::F64(1.5));
        assert_eq!(data["e"], rmpv::Value::F64(100.0), "an exponent makes a float");
        assert_eq!(data["n"].as_i64(), Some(-3));
        assert_eq!(data["big"].as_u64(), Some(u64::MAX));
        assert_eq!(
            serde_json::from_str::<Value>(&to_json(&packed).unwrap()).unwrap(),
            serde_json::from_str::<Value>(json).unwrap()
        );
    }

    #[test]
    fn what_one_encoding_cannot_hold_is_refused() {
        assert!(from_json("1e400").is_err());
        assert!(from_json("{").is_err());
        assert!(from_json("1 2").is_err());
        let bin = [0xc4, 0x01, 0x00];
        assert!(to_json(&bin).is_err());
        let int_key = [0x81, 0x01, 0x02];
        assert!(to_json(&int_key).is_err());
        let nan = [0xcb, 0x7f, 0xf8, 0, 0, 0, 0, 0, 0];
        assert!(to_json(&nan).is_err());
        assert!(to_json(&[0xc0, 0xc0]).is_err(), "two values");
        assert!(to_json(&[0xc1]).is_err(), "a reserved marker");
        assert!(to_json(&[0x91, 0xc1]).is_err(), "a reserved marker inside");
        let ext = [0xd4, 0x01, 0x00];
        assert!(to_json(&ext).is_err());
        assert_eq!(to_json(&[0x92, 0xc0, 0xcb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0]).unwrap(), "[null,1.5]");
        let deep = [vec![0x91; 10_000], vec![0xc0]].concat();
        assert!(to_json(&deep).is_err());
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = to_json(&bytes);
        }
    }
}
