//! `--base-path`: the path prefix every route is served under, for gateways
//! that mount pushwire at a path (`location /pushwire/ { ... }`) instead of
//! giving it a host of its own.

use std::fmt;
use std::str::FromStr;

/// A validated path prefix: empty for the root, otherwise `/a/b`, with no
/// trailing slash. Routes keep their own paths (`/ws`, `/api/stats`) and are
/// mounted under it, so that the prefix is added and removed in one place.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BasePath(String);

impl BasePath {
    /// What goes before every route: `""` or `/pushwire`.
    pub fn prefix(&self) -> &str {
        &self.0
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// A matched router pattern (`/pushwire/ws`) as the route it registers
    /// (`/ws`); `None` for a pattern outside the prefix, or the prefix itself.
    pub fn route<'a>(&self, pattern: &'a str) -> Option<&'a str> {
        pattern.strip_prefix(self.prefix()).filter(|route| route.starts_with('/'))
    }

    /// The last segment of the prefix (`pushwire` of `/a/pushwire`): a
    /// redirect from the prefix to `prefix/` names it relatively, so that it
    /// also holds behind a gateway that mounts the server deeper still.
    pub fn last_segment(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or_default()
    }
}

impl FromStr for BasePath {
    type Err = String;

    /// `/` (or nothing) for the root; otherwise `/` followed by segments of
    /// URL-safe characters (RFC 3986 "unreserved": letters, digits, `-._~`),
    /// with no empty, `.` or `..` segment and no trailing slash. Anything a
    /// proxy or browser would rewrite (encoding, dot segments, doubled
    /// slashes) is refused rather than half-matched.
    fn from_str(s: &str) -> Result<BasePath, String> {
        if s.is_empty() || s == "/" {
            return Ok(BasePath::default());
        }
        let Some(rest) = s.strip_prefix('/') else { return Err(format!("{s:?} must start with /")) };
        if rest.ends_with('/') {
            return Err(format!("{s:?} must not end with / (write {:?})", s.trim_end_matches('/')));
        }
        for segment in rest.split('/') {
            if segment.is_empty() || segment == "." || segment == ".." {
                return Err(format!("{s:?} has an empty, . or .. segment"));
            }
            if let Some(c) = segment.chars().find(|c| !(c.is_ascii_alphanumeric() || "-._~".contains(*c))) {
                return Err(format!("{s:?} holds {c:?}: only letters, digits, -._~ and / between segments"));
            }
        }
        Ok(BasePath(s.to_owned()))
    }
}

impl fmt::Display for BasePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.is_root() { "/" } else { &self.0 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_and_valid_prefixes() {
        for root in ["", "/"] {
            let base: BasePath = root.parse().unwrap();
            assert!(base.is_root());
            assert_eq!((base.prefix(), base.to_string()), ("", "/".to_string()));
        }
        for ok in ["/pushwire", "/a/b-c/d_e.f~g", "/V2"] {
            let base: BasePath = ok.parse().unwrap();
            assert_eq!((base.prefix(), base.to_string()), (ok, ok.to_string()));
        }
        assert_eq!("/a/pushwire".parse::<BasePath>().unwrap().last_segment(), "pushwire");
    }

    #[test]
    fn nonsense_is_refused() {
        for bad in [
            "pushwire",
            "/pushwire/",
            "//",
            "/a//b",
            "/a/./b",
            "/..",
            "/a b",
            "/a%20b",
            "/a?b",
            "/a#b",
            "/{x}",
            "/é",
            "/a;b",
            "\\a",
        ] {
            assert!(bad.parse::<BasePath>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn patterns_are_read_without_the_prefix() {
        let base: BasePath = "/pushwire".parse().unwrap();
        assert_eq!(base.route("/pushwire/ws"), Some("/ws"));
        assert_eq!(base.route("/pushwire/"), Some("/"));
        assert_eq!(base.route("/pushwire"), None, "the redirect to /pushwire/ is no route");
        assert_eq!(base.route("/pushwirex/ws"), None);
        assert_eq!(base.route("/ws"), None);
        let root = BasePath::default();
        assert_eq!(root.route("/ws"), Some("/ws"));
        assert_eq!(root.route("/"), Some("/"));
    }
}
