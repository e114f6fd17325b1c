//! Access control (API.md v1.1): off unless a key is configured. A request
//! carries a JWT, as `Authorization: Bearer` or (for browsers' `WebSocket`
//! and `EventSource`, which cannot set headers) the `access_token` query
//! parameter; the header wins. Its claims say which channels it may
//! subscribe to and publish on, whether it may use the dashboard's controls,
//! and until when: a live connection ends at its `exp`.
//!
//! Signatures are checked by jsonwebtoken with one algorithm per key: HS256
//! for a secret, RS256 or ES256 for a PEM public key. Any other `alg`,
//! `none` included, is refused.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::message::ChannelName;

/// How tokens are verified. Shared as `Arc`.
pub struct Verifier {
    key: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier").field("algorithms", &self.validation.algorithms).finish_non_exhaustive()
    }
}

/// Why a token was not accepted (said to the client as `401 unauthorized`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unauthorized(pub String);

impl Verifier {
    /// An HS256 verifier.
    pub fn secret(secret: &[u8]) -> Verifier {
        Self::new(DecodingKey::from_secret(secret), Algorithm::HS256)
    }

    /// An RS256 or ES256 verifier, from a PEM public key (which one is told by the key).
    pub fn public_key(pem: &[u8]) -> Result<Verifier, String> {
        if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
            return Ok(Self::new(key, Algorithm::RS256));
        }
        match DecodingKey::from_ec_pem(pem) {
            Ok(key) => Ok(Self::new(key, Algorithm::ES256)),
            Err(e) => Err(format!("not an RSA or EC (P-256) public key in PEM: {e}")),
        }
    }

    fn new(key: DecodingKey, algorithm: Algorithm) -> Verifier {
        let mut validation = Validation::new(algorithm);
        // `exp` is exact: a token is refused from its `exp` on, as a live
        // connection is ended then.
        validation.leeway = 0;
        // `nbf` is checked when present: a token not valid yet is refused.
        validation.validate_nbf = true;
        validation.validate_aud = false;
        Verifier { key, validation }
    }

    /// Verifies a token and returns what it grants.
    pub fn verify(&self, token: &str) -> Result<Grant, Unauthorized> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            Unauthorized(match e.kind() {
                ErrorKind::ExpiredSignature => "the access token has expired".into(),
                ErrorKind::ImmatureSignature => "the access token is not valid yet (nbf)".into(),
                ErrorKind::InvalidSignature => "the access token's signature is not valid".into(),
                ErrorKind::InvalidAlgorithm => "the access token's algorithm is not accepted".into(),
                ErrorKind::MissingRequiredClaim(claim) => format!("the access token has no `{claim}` claim"),
                _ => format!("the access token is not valid: {e}"),
            })
        })?;
        let claims = data.claims;
        Ok(Grant {
            // An `exp` past what the clock can hold is simply far off.
            expires: UNIX_EPOCH.checked_add(Duration::from_secs(claims.exp)),
            subject: claims.sub,
            subscribe: claims.subscribe,
            publish: claims.publish,
            admin: claims.admin,
        })
    }
}

#[derive(Deserialize)]
struct Claims {
    exp: u64,
    sub: Option<String>,
    #[serde(default)]
    subscribe: Vec<String>,
    #[serde(default)]
    publish: Vec<String>,
    #[serde(default)]
    admin: bool,
}

/// What a verified token allows.
#[derive(Debug, Clone)]
pub struct Grant {
    /// `None`: an `exp` too far off for the system clock to name.
    pub expires: Option<SystemTime>,
    pub subject: Option<String>,
    subscribe: Vec<String>,
    publish: Vec<String>,
    admin: bool,
}

/// What a request may do: everything when access control is off, or what
/// its token grants. Cheap to clone.
#[derive(Debug, Clone)]
pub enum Access {
    Open,
    Granted(Arc<Grant>),
}

impl Access {
    pub fn may_subscribe(&self, channel: &ChannelName) -> bool {
        match self {
            Access::Open => true,
            Access::Granted(grant) => grant.subscribe.iter().any(|p| matches(p, channel.as_str())),
        }
    }

    pub fn may_publish(&self, channel: &ChannelName) -> bool {
        match self {
            Access::Open => true,
            Access::Granted(grant) => grant.publish.iter().any(|p| matches(p, channel.as_str())),
        }
    }

    pub fn is_admin(&self) -> bool {
        match self {
            Access::Open => true,
            Access::Granted(grant) => grant.admin,
        }
    }

    /// When the access ends (its token's `exp`), if ever.
    pub fn expires(&self) -> Option<SystemTime> {
        match self {
            Access::Open => None,
            Access::Granted(grant) => grant.expires,
        }
    }

    /// The first of `channels` this access may not subscribe to.
    pub fn first_unsubscribable<'a>(&self, channels: &'a [ChannelName]) -> Option<&'a ChannelName> {
        channels.iter().find(|c| !self.may_subscribe(c))
    }
}

/// A channel pattern: a name, a prefix ending in `*`, or `*` alone.
fn matches(pattern: &str, channel: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => channel.starts_with(prefix),
        None => pattern == channel,
    }
}

/// The token of a request: the `Authorization: Bearer` header, else the
/// `access_token` query parameter.
pub fn token<'a>(authorization: Option<&'a str>, query: &'a str) -> Option<std::borrow::Cow<'a, str>> {
    if let Some(value) = authorization {
        let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
        if scheme.eq_ignore_ascii_case("bearer") {
            return Some(token.trim().into());
        }
    }
    // JWTs are URL-safe, but a client may still have percent-encoded one.
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix("access_token="))
        .map(|t| percent_encoding::percent_decode_str(t).decode_utf8_lossy())
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header, encode};
    use serde_json::json;

    fn now() -> u64 {
        SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
    }

    fn hs256(claims: serde_json::Value, secret: &[u8]) -> String {
        encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(secret)).unwrap()
    }

    #[test]
    fn patterns() {
        for (pattern, channel, expected) in [
            ("news", "news", true),
            ("news", "news2", false),
            ("user.42.*", "user.42.a", true),
            ("user.42.*", "user.42.", true),
            ("user.42.*", "user.4", false),
            ("*", "anything", true),
            ("", "x", false),
        ] {
            assert_eq!(matches(pattern, channel), expected, "{pattern} ~ {channel}");
        }
    }

    #[test]
    fn verifies_signature_expiry_and_algorithm() {
        let verifier = Verifier::secret(b"s3cret");
        let good = hs256(json!({"exp": now() + 60, "subscribe": ["a*"], "publish": ["a1"], "sub": "u"}), b"s3cret");
        let grant = Access::Granted(Arc::new(verifier.verify(&good).unwrap()));
        let (a1, b): (ChannelName, ChannelName) = ("a1".parse().unwrap(), "b".parse().unwrap());
        assert!(grant.may_subscribe(&a1) && !grant.may_subscribe(&b));
        assert!(grant.may_publish(&a1) && !grant.may_publish(&"a2".parse().unwrap()));
        assert!(!grant.is_admin());
        let wrong_key = hs256(json!({"exp": now() + 60}), b"other");
        assert!(verifier.verify(&wrong_key).unwrap_err().0.contains("signature"));
        let expired = hs256(json!({"exp": now() - 1}), b"s3cret");
        assert!(verifier.verify(&expired).unwrap_err().0.contains("expired"));
        let no_exp = hs256(json!({"sub": "u"}), b"s3cret");
        assert!(verifier.verify(&no_exp).is_err());
        // alg none: header {"alg":"none"}, no signature.
        let none =
            format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{}.", base64url(&json!({"exp": now() + 60}).to_string()));
        assert!(verifier.verify(&none).is_err());
        let hs384 =
            encode(&Header::new(Algorithm::HS384), &json!({"exp": now() + 60}), &EncodingKey::from_secret(b"s3cret"))
                .unwrap();
        assert!(verifier.verify(&hs384).is_err(), "only the configured algorithm");
    }

    #[test]
    fn the_header_wins_over_the_query() {
        assert_eq!(token(Some("Bearer abc"), "access_token=xyz").as_deref(), Some("abc"));
        assert_eq!(token(None, "channels=a&access_token=xyz").as_deref(), Some("xyz"));
        assert_eq!(token(Some("Basic Zm9v"), "access_token=x%2Ey").as_deref(), Some("x.y"));
        assert_eq!(token(None, "channels=a"), None);
    }

    proptest::proptest! {
        /// Whatever a client sends as a token, in a header or a query, is
        /// refused with a reason, never a panic.
        #[test]
        fn arbitrary_tokens_are_refused(token_text in ".{0,300}", header in ".{0,40}", query in ".{0,120}") {
            let verifier = Verifier::secret(b"k");
            proptest::prop_assert!(verifier.verify(&token_text).is_err_and(|e| !e.0.is_empty()));
            let _ = token(Some(&header), &query);
        }
    }

    fn base64url(s: &str) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
    }
}
