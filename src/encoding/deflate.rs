//! Raw deflate (RFC 1951), as permessage-deflate (RFC 7692) and the SSE
//! stream's gzip use it: every piece is deflated on its own, from a fresh
//! compressor, and ends with a sync flush. A piece then depends on nothing
//! sent before it, so it is compressed once and the same bytes serve every
//! connection that gets it; and no connection keeps a compressor (zlib's
//! state is ~256 KiB) or an inflater (~40 KiB) while it waits.
//!
//! The compressor and the inflater are the worker thread's, reset before
//! each use: compressing and inflating never wait, so no two uses overlap.

use std::cell::RefCell;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// The empty stored block a sync flush ends with: RFC 7692 strips it from a
/// message's payload and the receiver puts it back before inflating.
pub const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

thread_local! {
    static COMPRESSOR: RefCell<Compress> = RefCell::new(Compress::new(Compression::default(), false));
    static INFLATER: RefCell<Decompress> = RefCell::new(Decompress::new(false));
}

/// `data` deflated on its own, ending with a sync flush (and so with [`TAIL`]).
pub fn deflate(data: &[u8]) -> Vec<u8> {
    COMPRESSOR.with_borrow_mut(|compressor| {
        compressor.reset();
        let mut out = Vec::with_capacity(data.len() / 2 + 64);
        loop {
            let read = compressor.total_in() as usize;
            // unwrap: raw deflate into spare room fails only on a misuse of the stream.
            compressor.compress_vec(&data[read..], &mut out, FlushCompress::Sync).unwrap();
            // Done once all is read and the flush had room to finish.
            if compressor.total_in() as usize == data.len() && out.len() < out.capacity() {
                return out;
            }
            out.reserve(out.capacity().max(64));
        }
    })
}

/// A message's payload as permessage-deflate sends it: deflated on its own,
/// without the [`TAIL`].
pub fn permessage(data: &[u8]) -> Vec<u8> {
    let mut out = deflate(data);
    debug_assert!(out.ends_with(&TAIL));
    out.truncate(out.len() - TAIL.len());
    out
}

/// Why a compressed message could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InflateError {
    #[error("the message inflates past the frame limit")]
    TooBig,
    #[error("the message is not valid deflate data")]
    Invalid,
}

/// A permessage-deflate payload inflated (its [`TAIL`] put back), holding
/// at most `limit + 1` bytes at any time: a deflate bomb is refused as
/// [`InflateError::TooBig`] before more than the limit is in memory.
/// Assumes no context from earlier messages (pushwire asks every client for
/// `client_no_context_takeover`).
pub fn inflate(payload: &[u8], limit: usize) -> Result<Vec<u8>, InflateError> {
    INFLATER.with_borrow_mut(|inflater| {
        inflater.reset(false);
        let mut out = Vec::with_capacity(payload.len().saturating_mul(2).max(64).min(limit.saturating_add(1)));
        for input in [payload, &TAIL[..]] {
            let start = inflater.total_in();
            loop {
                if out.len() == out.capacity() {
                    if out.len() > limit {
                        return Err(InflateError::TooBig);
                    }
                    // Grows by doubling, never past one byte over the limit.
                    let room = out.len().max(256).min(limit + 1 - out.len());
                    out.reserve_exact(room);
                }
                let read = (inflater.total_in() - start) as usize;
                let before = (inflater.total_in(), inflater.total_out());
                let status = inflater
                    .decompress_vec(&input[read..], &mut out, FlushDecompress::Sync)
                    .map_err(|_| InflateError::Invalid)?;
                if out.len() > limit {
                    return Err(InflateError::TooBig);
                }
                if status == Status::StreamEnd {
                    // A final block: what follows it (our TAIL) is not data.
                    return Ok(out);
                }
                let done = (inflater.total_in() - start) as usize == input.len();
                if done && out.len() < out.capacity() {
                    break;
                }
                if before == (inflater.total_in(), inflater.total_out()) && out.len() < out.capacity() {
                    return Err(InflateError::Invalid);
                }
            }
        }
        Ok(out)
    })
}

/// The answer to a client's `Sec-WebSocket-Extensions` offers: the first
/// permessage-deflate offer that can be honoured, answered with
/// `server_no_context_takeover` (a message is compressed once, for every
/// connection) and `client_no_context_takeover` (no inflater is kept per
/// connection), as gorilla/websocket, Centrifugo's library, answers.
/// `None`: no offer can be honoured; the connection goes uncompressed.
pub fn negotiate<'a>(offers: impl IntoIterator<Item = &'a str>) -> Option<String> {
    offers.into_iter().flat_map(|header| header.split(',')).find_map(answer)
}

/// The answer to one offer (`permessage-deflate; param[=value]; ...`), if it
/// can be honoured.
fn answer(offer: &str) -> Option<String> {
    let mut params = offer.split(';').map(str::trim);
    if !params.next()?.eq_ignore_ascii_case("permessage-deflate") {
        return None;
    }
    let mut seen = Vec::new();
    let mut server_max_window_bits = None;
    for param in params {
        let (name, value) = match param.split_once('=') {
            Some((name, value)) => (name.trim(), Some(value.trim().trim_matches('"'))),
            None => (param, None),
        };
        let name = name.to_ascii_lowercase();
        // RFC 7692 §7: an offer with a parameter twice is declined.
        if seen.contains(&name) {
            return None;
        }
        match (name.as_str(), value) {
            ("server_no_context_takeover" | "client_no_context_takeover", None) => {}
            // Any window the client uses can be inflated with ours (15 bits).
            ("client_max_window_bits", None) => {}
            ("client_max_window_bits", Some(bits)) => {
                window_bits(bits)?;
            }
            // The shared bytes are compressed with a 15-bit window: a client
            // that cannot take one is declined (API.md v1.2).
            ("server_max_window_bits", Some(bits)) => match window_bits(bits)? {
                15 => server_max_window_bits = Some(15),
                _ => return None,
            },
            _ => return None,
        }
        seen.push(name);
    }
    let mut answer = String::from("permessage-deflate; server_no_context_takeover; client_no_context_takeover");
    if let Some(bits) = server_max_window_bits {
        // RFC 7692 §7.1.2.1: an accepted offer with this parameter is answered with it.
        answer.push_str(&format!("; server_max_window_bits={bits}"));
    }
    Some(answer)
}

/// A window size parameter: 8 to 15, digits only.
fn window_bits(value: &str) -> Option<u8> {
    let bits: u8 = value.parse().ok().filter(|_| value.bytes().all(|b| b.is_ascii_digit()))?;
    (8..=15).contains(&bits).then_some(bits)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn random_bytes_never_panic_the_inflater(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            if let Ok(plain) = inflate(&bytes, 4096) {
                prop_assert!(plain.len() <= 4096);
            }
        }

        #[test]
        fn whatever_is_deflated_inflates_back(plain in proptest::collection::vec(any::<u8>(), 0..4096)) {
            prop_assert_eq!(inflate(&permessage(&plain), plain.len()).unwrap(), plain);
        }
    }

    #[test]
    fn a_piece_inflates_back_alone_and_pieces_do_not_depend_on_each_other() {
        let first = br#"{"type":"message","channel":"demo","seq":1,"data":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}"#;
        let second = br#"{"type":"message","channel":"demo","seq":2,"data":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}"#;
        let a = permessage(first);
        let b = permessage(second);
        assert!(a.len() < first.len());
        // Each with a fresh inflater, in any order.
        assert_eq!(inflate(&b, 1024).unwrap(), second);
        assert_eq!(inflate(&a, 1024).unwrap(), first);
        assert_eq!(deflate(first)[..], [a.as_slice(), &TAIL].concat()[..]);
    }

    #[test]
    fn a_bomb_is_refused_at_the_limit() {
        let zeros = vec![0u8; 10 * 1024 * 1024];
        let bomb = permessage(&zeros);
        assert!(bomb.len() < 20 * 1024, "{} bytes", bomb.len());
        assert_eq!(inflate(&bomb, 128 * 1024), Err(InflateError::TooBig));
        assert_eq!(inflate(&bomb, zeros.len()).unwrap().len(), zeros.len());
        assert_eq!(inflate(&permessage(b"x"), 1).unwrap(), b"x");
        assert_eq!(inflate(&permessage(b"xy"), 1), Err(InflateError::TooBig));
        assert_eq!(inflate(b"\xff\xff\xff\xff", 1024), Err(InflateError::Invalid));
    }

    #[test]
    fn offers_are_answered_or_declined_as_api_md_says() {
        let ours = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";
        // Chromium's offer.
        assert_eq!(negotiate(["permessage-deflate; client_max_window_bits"]).as_deref(), Some(ours));
        assert_eq!(negotiate(["permessage-deflate"]).as_deref(), Some(ours));
        assert_eq!(
            negotiate(["permessage-deflate; server_no_context_takeover; client_max_window_bits=10"]).as_deref(),
            Some(ours)
        );
        assert_eq!(
            negotiate(["permessage-deflate; server_max_window_bits=15"]).as_deref(),
            Some(format!("{ours}; server_max_window_bits=15").as_str())
        );
        // A smaller server window is declined; the next offer is taken.
        assert_eq!(negotiate(["permessage-deflate; server_max_window_bits=10"]), None);
        assert_eq!(
            negotiate(["permessage-deflate; server_max_window_bits=10, permessage-deflate"]).as_deref(),
            Some(ours)
        );
        assert_eq!(negotiate(["x-webkit-deflate-frame", "permessage-deflate"]).as_deref(), Some(ours));
        for refused in [
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; unknown_param",
            "permessage-deflate; client_max_window_bits=16",
            "permessage-deflate; client_max_window_bits=7",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_no_context_takeover=1",
            "deflate-frame",
        ] {
            assert_eq!(negotiate([refused]), None, "{refused}");
        }
    }
}
