//! Credentials kept out of what pushwire shows: the request span of every log
//! line (`routes/span.rs`) and the teaching panel's captures (`lab::inspect`).

/// Headers whose values are never shown (API.md v1.1, always).
const SECRET_HEADERS: [&str; 3] = ["cookie", "authorization", "proxy-authorization"];
const REDACTED: &[u8] = b"[redacted]";

/// A request head with the values of credential headers and of the
/// `access_token` query parameter replaced by `[redacted]`.
pub fn redact(head: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(head.len());
    for (i, line) in head.split_inclusive(|&b| b == b'\n').enumerate() {
        let name = line.split(|&b| b == b':').next().unwrap_or(b"");
        if i == 0 {
            redact_token(line, &mut out);
        } else if line.contains(&b':')
            && SECRET_HEADERS.iter().any(|h| name.trim_ascii().eq_ignore_ascii_case(h.as_bytes()))
        {
            out.extend_from_slice(name);
            out.extend_from_slice(b": ");
            out.extend_from_slice(REDACTED);
            out.extend_from_slice(if line.ends_with(b"\r\n") {
                b"\r\n"
            } else if line.ends_with(b"\n") {
                b"\n"
            } else {
                b""
            });
        } else {
            // A `Referer` can carry a page's own `?access_token=`.
            redact_token(line, &mut out);
        }
    }
    out
}

/// Copies a line, replacing the value of an `access_token=` query parameter
/// (up to the next `&`, space, `#` or line end).
fn redact_token(line: &[u8], out: &mut Vec<u8>) {
    const KEY: &[u8] = b"access_token=";
    let mut rest = line;
    while let Some(at) = rest.windows(KEY.len()).position(|w| w == KEY) {
        let starts_param = at == 0 || matches!(rest[at - 1], b'?' | b'&');
        out.extend_from_slice(&rest[..at + KEY.len()]);
        rest = &rest[at + KEY.len()..];
        if starts_param {
            let end = rest.iter().position(|&b| matches!(b, b'&' | b' ' | b'#' | b'\r' | b'\n')).unwrap_or(rest.len());
            out.extend_from_slice(REDACTED);
            rest = &rest[end..];
        }
    }
    out.extend_from_slice(rest);
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn credentials_are_redacted() {
        let head = b"GET /sse?channels=a&access_token=eyJ.x.y&client=p HTTP/1.1\r\nHost: h\r\n\
Authorization: Bearer eyJ.x.y\r\ncookie: s=1\r\nProxy-Authorization: Basic Zm9v\r\nX-Seen: access_token=keep\r\n\
Referer: http://h/?access_token=eyJ.x.y\r\n\r\n";
        let redacted = String::from_utf8(redact(head)).unwrap();
        assert_eq!(
            redacted,
            "GET /sse?channels=a&access_token=[redacted]&client=p HTTP/1.1\r\nHost: h\r\n\
Authorization: [redacted]\r\ncookie: [redacted]\r\nProxy-Authorization: [redacted]\r\nX-Seen: access_token=keep\r\n\
Referer: http://h/?access_token=[redacted]\r\n\r\n"
        );
        assert!(!redacted.contains("eyJ") && !redacted.contains("Zm9v"));
        assert_eq!(redact(b"GET /poll?my_access_token=1 HTTP/1.1\r\n"), b"GET /poll?my_access_token=1 HTTP/1.1\r\n");
    }
}
