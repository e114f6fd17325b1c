//! The origin policy (API.md v1.1 "Origins"): which cross-origin pages may
//! use the server besides its own. A value that the state holds and
//! `routes/access.rs` enforces.

use actix_web::http::header::{self, HeaderMap};

/// Which cross-origin pages may use the server, besides its own.
#[derive(Debug, Clone, Default)]
pub struct Origins {
    any: bool,
    /// Lowercase `scheme://host[:port]`, without a trailing slash.
    listed: Vec<String>,
}

impl Origins {
    pub fn new(allowed: &[String]) -> Origins {
        let any = allowed.iter().any(|o| o.trim() == "*");
        let listed = allowed.iter().map(|o| o.trim().trim_end_matches('/').to_ascii_lowercase()).collect();
        Origins { any, listed }
    }

    /// Whether a request with this `Origin` may go on: the same origin
    /// (host and port equal to `X-Forwarded-Host` or `Host`; the scheme is not
    /// compared, as TLS often ends at a proxy), a listed one, or any with `*`.
    pub fn allows(&self, origin: &str, headers: &HeaderMap) -> bool {
        let origin = origin.trim().trim_end_matches('/').to_ascii_lowercase();
        if self.any || self.listed.contains(&origin) {
            return true;
        }
        let host = headers
            .get("x-forwarded-host")
            .or_else(|| headers.get(header::HOST))
            .and_then(|h| h.to_str().ok())
            .map(|h| h.split(',').next().unwrap_or(h).trim().to_ascii_lowercase());
        match (origin.split_once("://"), host) {
            (Some((scheme, authority)), Some(host)) => without_default_port(scheme, authority) == strip_port(&host),
            _ => false,
        }
    }
}

/// `host:80` for http and `host:443` for https name the same origin as `host`.
fn without_default_port<'a>(scheme: &str, authority: &'a str) -> &'a str {
    match (scheme, authority.rsplit_once(':')) {
        ("http", Some((host, "80"))) | ("https", Some((host, "443"))) => host,
        _ => authority,
    }
}

fn strip_port(host: &str) -> &str {
    host.strip_suffix(":80").or_else(|| host.strip_suffix(":443")).unwrap_or(host)
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::HeaderValue;

    use super::*;

    fn headers(host: &str, forwarded: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_str(host).unwrap());
        if let Some(f) = forwarded {
            h.insert(header::HeaderName::from_static("x-forwarded-host"), HeaderValue::from_str(f).unwrap());
        }
        h
    }

    #[test]
    fn same_origin_listed_or_any() {
        let own = Origins::new(&[]);
        assert!(own.allows("http://127.0.0.1:8080", &headers("127.0.0.1:8080", None)));
        assert!(own.allows("https://app.example", &headers("app.example", None)), "scheme not compared");
        assert!(own.allows("https://app.example", &headers("app.example:443", None)));
        assert!(own.allows("https://pub.example", &headers("10.0.0.5:8080", Some("pub.example"))));
        assert!(!own.allows("http://127.0.0.1:8080", &headers("10.0.0.5:8080", Some("pub.example"))));
        assert!(!own.allows("http://evil.example", &headers("127.0.0.1:8080", None)));
        assert!(!own.allows("null", &headers("127.0.0.1:8080", None)));
        let listed = Origins::new(&["https://App.example/".into()]);
        assert!(listed.allows("https://app.example", &headers("127.0.0.1:8080", None)));
        assert!(!listed.allows("http://app.example", &headers("127.0.0.1:8080", None)));
        assert!(Origins::new(&["*".into()]).allows("http://evil.example", &headers("x", None)));
    }
}
