//! What a request asks for its bytes (API.md v1.2): its encoding
//! (`?format=`, `Accept`, a WebSocket subprotocol) and compression
//! (`Accept-Encoding`, a permessage-deflate offer, and pushwire's own
//! `?compression=off` for a page whose browser offers it regardless).

use actix_web::HttpRequest;
use actix_web::http::header::{self, HeaderMap};

use crate::encoding::{Format, deflate};
use crate::error::AppError;
use crate::transport::Negotiated;

/// The subprotocols of API.md v1.2.
pub const MSGPACK_PROTOCOL: &str = "pushwire.msgpack";
pub const JSON_PROTOCOL: &str = "pushwire.json";

/// `?format=` and `?compression=` of a stream request.
#[derive(Debug, Clone, Copy, Default)]
pub struct Asked {
    pub format: Option<Format>,
    /// `false` for `?compression=off`.
    pub compression: bool,
}

impl Asked {
    pub fn parse(format: Option<&str>, compression: Option<&str>) -> Result<Asked, AppError> {
        let format = match format {
            None => None,
            Some(value) => Some(
                Format::parse(value)
                    .ok_or_else(|| AppError::bad_request(format!("format must be json or msgpack, got {value:?}")))?,
            ),
        };
        let compression = match compression {
            None | Some("on") => true,
            Some("off") => false,
            Some(value) => return Err(AppError::bad_request(format!("compression must be on or off, got {value:?}"))),
        };
        Ok(Asked { format, compression })
    }
}

/// A WebSocket's encoding and compression, with the headers its `101`
/// answers them with (`Sec-WebSocket-Protocol`, `Sec-WebSocket-Extensions`).
pub struct WebSocketTerms {
    pub negotiated: Negotiated,
    pub protocol: Option<&'static str>,
    pub extensions: Option<String>,
}

pub fn websocket(req: &HttpRequest, asked: Asked, deflate_on: bool) -> WebSocketTerms {
    let headers = req.headers();
    // The first of ours in the client's list; a subprotocol wins over `?format=`.
    let protocol = values(headers, &header::SEC_WEBSOCKET_PROTOCOL).find_map(|p| match p {
        MSGPACK_PROTOCOL => Some(MSGPACK_PROTOCOL),
        JSON_PROTOCOL => Some(JSON_PROTOCOL),
        _ => None,
    });
    let format = match protocol {
        Some(MSGPACK_PROTOCOL) => Format::MsgPack,
        Some(_) => Format::Json,
        None => asked.format.unwrap_or_default(),
    };
    let extensions = match deflate_on && asked.compression {
        true => deflate::negotiate(headers.get_all(header::SEC_WEBSOCKET_EXTENSIONS).filter_map(|v| v.to_str().ok())),
        false => None,
    };
    WebSocketTerms { negotiated: Negotiated { format, compressed: extensions.is_some() }, protocol, extensions }
}

/// A poll's encoding: `?format=` wins over `Accept`.
pub fn poll_format(headers: &HeaderMap, asked: Asked) -> Format {
    asked.format.unwrap_or_else(|| match wants_msgpack(headers) {
        true => Format::MsgPack,
        false => Format::Json,
    })
}

/// Whether the answer of an HTTP transport is gzipped.
pub fn gzip(headers: &HeaderMap, asked: Asked, gzip_on: bool) -> bool {
    gzip_on && asked.compression && accepts_gzip(headers)
}

/// Comma-separated values of every instance of a header, trimmed.
fn values<'a>(headers: &'a HeaderMap, name: &header::HeaderName) -> impl Iterator<Item = &'a str> {
    headers.get_all(name).filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).map(str::trim)
}

/// A list entry `token;q=0.5` as its token (lowercased) and weight.
fn weighted(entry: &str) -> (String, f32) {
    let mut parts = entry.split(';').map(str::trim);
    let token = parts.next().unwrap_or("").to_ascii_lowercase();
    let q = parts
        .filter_map(|p| p.split_once('='))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("q"))
        .map_or(1.0, |(_, value)| value.trim().parse().unwrap_or(0.0));
    (token, q)
}

/// `Accept-Encoding` allows gzip with a q above 0 (by name, or by `*`).
fn accepts_gzip(headers: &HeaderMap) -> bool {
    let mut star = None;
    for (coding, q) in values(headers, &header::ACCEPT_ENCODING).map(weighted) {
        match coding.as_str() {
            "gzip" | "x-gzip" => return q > 0.0,
            "*" => star = Some(q > 0.0),
            _ => {}
        }
    }
    star.unwrap_or(false)
}

/// `Accept` lists `application/msgpack` with a q above 0 and no higher q for
/// `application/json`.
fn wants_msgpack(headers: &HeaderMap) -> bool {
    let (mut msgpack, mut json) = (0.0f32, 0.0f32);
    for (media, q) in values(headers, &header::ACCEPT).map(weighted) {
        match media.as_str() {
            "application/msgpack" => msgpack = msgpack.max(q),
            "application/json" => json = json.max(q),
            _ => {}
        }
    }
    msgpack > 0.0 && msgpack >= json
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::{HeaderName, HeaderValue};

    use super::*;

    fn headers(name: &'static str, value: &'static str) -> HeaderMap {
        let mut map = HeaderMap::new();
        map.insert(HeaderName::from_static(name), HeaderValue::from_static(value));
        map
    }

    #[test]
    fn gzip_is_used_when_accept_encoding_allows_it() {
        for (value, expected) in [
            ("gzip, deflate, br", true),
            ("br;q=1.0, gzip;q=0.8", true),
            ("gzip;q=0", false),
            ("identity", false),
            ("*", true),
            ("*;q=0", false),
            ("*, gzip;q=0", false),
            ("GZIP", true),
        ] {
            assert_eq!(accepts_gzip(&headers("accept-encoding", value)), expected, "{value}");
        }
        assert!(!accepts_gzip(&HeaderMap::new()));
    }

    #[test]
    fn msgpack_is_chosen_when_accept_prefers_it() {
        for (value, expected) in [
            ("application/msgpack", true),
            ("application/msgpack, application/json", true),
            ("application/json, application/msgpack;q=0.5", false),
            ("application/msgpack;q=0", false),
            ("*/*", false),
            ("application/json", false),
        ] {
            assert_eq!(wants_msgpack(&headers("accept", value)), expected, "{value}");
        }
    }

    #[test]
    fn query_values_are_checked() {
        assert!(Asked::parse(Some("xml"), None).is_err());
        assert!(Asked::parse(None, Some("maybe")).is_err());
        let asked = Asked::parse(Some("msgpack"), Some("off")).unwrap();
        assert_eq!(asked.format, Some(Format::MsgPack));
        assert!(!asked.compression);
    }
}
