//! Which resource a request locks, and how untrusted input becomes a bounded Redis key.
//!
//! An extractor reads the request head and answers with a resource name, with `None` (the
//! request passes through unlocked), or with a [`KeyRejection`] (the request is answered
//! `400 Bad Request` and the handler never runs). The layer then turns the name into a Redis
//! key: it prefixes the namespace, keeps short printable names as they are, and replaces
//! anything long or unusual by its SHA-256, so a client can neither pick arbitrary Redis keys
//! nor make them arbitrarily large.

use std::borrow::Cow;
use std::fmt;

use http::request::Parts;
use http::HeaderName;
use percent_encoding::percent_decode;
use sha2::{Digest, Sha256};

/// Names the resource a request must lock.
///
/// Implemented by the built-ins of this module ([`path`], [`query`], [`header`],
/// [`path_param`], and `route_param` with the `axum` feature), by closures through
/// [`from_fn`], and by any `Fn(&Parts) -> T` where `T` is an [`IntoLockKey`].
pub trait KeyExtractor: Send + Sync + 'static {
    /// The resource to lock for this request; `Ok(None)` lets the request through unlocked.
    fn extract(&self, request: &Parts) -> Result<Option<String>, KeyRejection>;
}

/// What a key closure may return.
pub trait IntoLockKey {
    /// Converts into the extractor's answer.
    fn into_lock_key(self) -> Result<Option<String>, KeyRejection>;
}

impl IntoLockKey for Option<String> {
    fn into_lock_key(self) -> Result<Option<String>, KeyRejection> {
        Ok(self)
    }
}

impl IntoLockKey for String {
    fn into_lock_key(self) -> Result<Option<String>, KeyRejection> {
        Ok(Some(self))
    }
}

impl IntoLockKey for Result<Option<String>, KeyRejection> {
    fn into_lock_key(self) -> Result<Option<String>, KeyRejection> {
        self
    }
}

impl<F, T> KeyExtractor for F
where
    F: Fn(&Parts) -> T + Send + Sync + 'static,
    T: IntoLockKey,
{
    fn extract(&self, request: &Parts) -> Result<Option<String>, KeyRejection> {
        self(request).into_lock_key()
    }
}

/// A key extractor from a closure; unlike passing the closure directly, the argument type is
/// inferred: `key::from_fn(|parts| parts.uri.host().map(str::to_owned))`.
pub fn from_fn<F, T>(f: F) -> FromFn<F>
where
    F: Fn(&Parts) -> T + Send + Sync + 'static,
    T: IntoLockKey,
{
    FromFn(f)
}

/// See [`from_fn`].
#[derive(Clone, Copy)]
pub struct FromFn<F>(F);

impl<F> fmt::Debug for FromFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FromFn")
    }
}

impl<F, T> KeyExtractor for FromFn<F>
where
    F: Fn(&Parts) -> T + Send + Sync + 'static,
    T: IntoLockKey,
{
    fn extract(&self, request: &Parts) -> Result<Option<String>, KeyRejection> {
        (self.0)(request).into_lock_key()
    }
}

/// Locks the request path, percent-decoded, so that `/orders/%34%32` and `/orders/42` share one
/// lock. Every request gets a key.
pub fn path() -> UriPath {
    UriPath
}

/// See [`path`].
#[derive(Debug, Clone, Copy)]
pub struct UriPath;

impl KeyExtractor for UriPath {
    fn extract(&self, request: &Parts) -> Result<Option<String>, KeyRejection> {
        decode(request.uri.path().as_bytes(), false)
            .map(Some)
            .map_err(|problem| KeyRejection::new("the request path", problem))
    }
}

/// Locks the value of query parameter `name` (e.g. `?resource_id=42`), form-decoded. Absent:
/// no lock. Present but empty, present twice, or not UTF-8 once decoded: `400`.
pub fn query(name: impl Into<String>) -> QueryParam {
    QueryParam { name: name.into() }
}

/// See [`query`].
#[derive(Debug, Clone)]
pub struct QueryParam {
    name: String,
}

impl KeyExtractor for QueryParam {
    fn extract(&self, request: &Parts) -> Result<Option<String>, KeyRejection> {
        let source = || format!("query parameter `{}`", self.name);
        let Some(query) = request.uri.query() else {
            return Ok(None);
        };
        let mut found = None;
        for pair in query.split('&').filter(|pair| !pair.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            // A name that does not decode cannot be the one asked for.
            if decode(name.as_bytes(), true).ok().as_deref() != Some(self.name.as_str()) {
                continue;
            }
            if found.is_some() {
                return Err(KeyRejection::new(source(), KeyProblem::Repeated));
            }
            found = Some(value);
        }
        let Some(value) = found else {
            return Ok(None);
        };
        let value = decode(value.as_bytes(), true)
            .map_err(|problem| KeyRejection::new(source(), problem))?;
        non_empty(value, source)
    }
}

/// Locks the value of header `name`. Absent: no lock. Empty, repeated, or not visible ASCII:
/// `400`.
pub fn header(name: HeaderName) -> Header {
    Header { name }
}

/// See [`header`].
#[derive(Debug, Clone)]
pub struct Header {
    name: HeaderName,
}

impl KeyExtractor for Header {
    fn extract(&self, request: &Parts) -> Result<Option<String>, KeyRejection> {
        let source = || format!("header `{}`", self.name);
        let mut values = request.headers.get_all(&self.name).iter();
        let Some(value) = values.next() else {
            return Ok(None);
        };
        if values.next().is_some() {
            return Err(KeyRejection::new(source(), KeyProblem::Repeated));
        }
        let value = value
            .to_str()
            .map_err(|_| KeyRejection::new(source(), KeyProblem::NotText))?;
        non_empty(value.to_owned(), source)
    }
}

/// Locks the path segment that `template` names `{name}` (or the rest of the path for
/// `{*name}`), percent-decoded. The template uses axum's syntax: `/orders/{id}`,
/// `/files/{*path}`. A path that does not match the template gets no lock.
pub fn path_param(template: impl Into<String>, name: impl Into<String>) -> PathParam {
    PathParam {
        template: template.into(),
        name: name.into(),
    }
}

/// See [`path_param`].
#[derive(Debug, Clone)]
pub struct PathParam {
    template: String,
    name: String,
}

impl KeyExtractor for PathParam {
    fn extract(&self, request: &Parts) -> Result<Option<String>, KeyRejection> {
        param_in(&self.template, request.uri.path(), &self.name, true)
    }
}

/// Locks route parameter `name` of the axum route that matched (`/orders/{id}` → `id`),
/// percent-decoded. Needs axum's `MatchedPath`, which exists only once the router has matched a
/// route: add the layer with `Router::route_layer` (or `Router::layer`), not around the router.
/// Without a matched route, or if the route has no such parameter, the request gets no lock
/// (and a warning is logged, since that is a setup mistake rather than a client's).
#[cfg(feature = "axum")]
pub fn route_param(name: impl Into<String>) -> RouteParam {
    RouteParam { name: name.into() }
}

/// See [`route_param`].
#[cfg(feature = "axum")]
#[derive(Debug, Clone)]
pub struct RouteParam {
    name: String,
}

#[cfg(feature = "axum")]
impl KeyExtractor for RouteParam {
    fn extract(&self, request: &Parts) -> Result<Option<String>, KeyRejection> {
        let Some(matched) = request.extensions.get::<axum::extract::MatchedPath>() else {
            tracing::warn!(
                param = %self.name,
                "no matched route: add the lock layer with `Router::route_layer`; request not locked"
            );
            return Ok(None);
        };
        let key = param_in(matched.as_str(), request.uri.path(), &self.name, false)?;
        if key.is_none() {
            tracing::warn!(
                param = %self.name,
                route = matched.as_str(),
                "the route has no such parameter; request not locked"
            );
        }
        Ok(key)
    }
}

/// The value of `{name}` in `path` matched against `template`. Literal segments are compared
/// only when `check_literals` (the router has already compared them otherwise).
/// Splits paths at `/`: for short paths a plain scan is cheaper than a `memchr` per segment.
fn is_slash(c: char) -> bool {
    c == '/'
}

fn param_in(
    template: &str,
    path: &str,
    name: &str,
    check_literals: bool,
) -> Result<Option<String>, KeyRejection> {
    let mut segments = path.split(is_slash);
    let mut captured: Option<Cow<'_, str>> = None;
    for pattern in template.split(is_slash) {
        let capture = pattern
            .strip_prefix('{')
            .and_then(|p| p.strip_suffix('}'))
            .filter(|_| !pattern.starts_with("{{"));
        match capture {
            Some(wildcard) if wildcard.starts_with('*') => {
                let rest: Vec<&str> = segments.by_ref().collect();
                if rest.is_empty() {
                    return Ok(None);
                }
                if &wildcard[1..] == name {
                    captured = Some(Cow::Owned(rest.join("/")));
                }
            }
            Some(param) => {
                let Some(segment) = segments.next() else {
                    return Ok(None);
                };
                if param == name {
                    captured = Some(Cow::Borrowed(segment));
                }
            }
            None => match segments.next() {
                Some(segment) if !check_literals || segment == pattern => {}
                _ => return Ok(None),
            },
        }
    }
    if check_literals && segments.next().is_some() {
        return Ok(None);
    }
    let Some(value) = captured else {
        return Ok(None);
    };
    let source = || format!("path parameter `{name}`");
    let value =
        decode(value.as_bytes(), false).map_err(|problem| KeyRejection::new(source(), problem))?;
    non_empty(value, source)
}

fn non_empty(
    value: String,
    source: impl FnOnce() -> String,
) -> Result<Option<String>, KeyRejection> {
    if value.is_empty() {
        Err(KeyRejection::new(source(), KeyProblem::Empty))
    } else {
        Ok(Some(value))
    }
}

/// Percent-decodes `bytes` (and `+` as a space in form encoding), refusing anything that is not
/// UTF-8 afterwards: a lossy decoding would give two different inputs the same lock.
fn decode(bytes: &[u8], form: bool) -> Result<String, KeyProblem> {
    let bytes: Cow<'_, [u8]> = if form && bytes.contains(&b'+') {
        Cow::Owned(
            bytes
                .iter()
                .map(|&b| if b == b'+' { b' ' } else { b })
                .collect(),
        )
    } else {
        Cow::Borrowed(bytes)
    };
    // Borrowed when there is nothing to decode.
    let decoded: Cow<'_, [u8]> = percent_decode(&bytes).into();
    match decoded {
        Cow::Borrowed(bytes) => std::str::from_utf8(bytes).map(str::to_owned),
        Cow::Owned(bytes) => String::from_utf8(bytes).map_err(|e| e.utf8_error()),
    }
    .map_err(|_| KeyProblem::NotUtf8)
}

/// Why a request's lock key was refused; the request is answered `400 Bad Request`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRejection {
    source: String,
    problem: KeyProblem,
}

/// What was wrong with a key.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyProblem {
    /// The value is empty.
    Empty,
    /// The value was given more than once, so which one the handler reads is unclear.
    Repeated,
    /// The value is not UTF-8 once percent-decoded.
    NotUtf8,
    /// The header value is not visible ASCII.
    NotText,
    /// A custom extractor's reason.
    Other(String),
}

impl KeyRejection {
    /// A rejection of the value found in `source` (e.g. "header `x-tenant`").
    pub fn new(source: impl Into<String>, problem: KeyProblem) -> Self {
        Self {
            source: source.into(),
            problem,
        }
    }

    /// A custom extractor's rejection, shown to the client as `message`.
    pub fn other(source: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(source, KeyProblem::Other(message.into()))
    }

    /// Where the value came from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// What was wrong with it.
    pub fn problem(&self) -> &KeyProblem {
        &self.problem
    }
}

impl fmt::Display for KeyRejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let source = &self.source;
        match &self.problem {
            KeyProblem::Empty => write!(f, "{source} is empty"),
            KeyProblem::Repeated => write!(f, "{source} is given more than once"),
            KeyProblem::NotUtf8 => write!(f, "{source} is not UTF-8 once percent-decoded"),
            KeyProblem::NotText => write!(f, "{source} is not visible ASCII"),
            KeyProblem::Other(message) => write!(f, "{source}: {message}"),
        }
    }
}

impl std::error::Error for KeyRejection {}

/// Turns resource names into Redis keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyFormat {
    pub(crate) namespace: String,
    pub(crate) max_len: usize,
}

/// Marks hashed names. Never kept in a verbatim name, so a client cannot send a name that
/// collides with the hash of another.
const HASHED: char = '#';

impl KeyFormat {
    pub(crate) const DEFAULT_NAMESPACE: &'static str = "quorumlock:http:";
    pub(crate) const DEFAULT_MAX_LEN: usize = 128;

    /// `namespace + name` when the name is at most `max_len` bytes of printable ASCII other
    /// than `#`; otherwise `namespace + "#" + hex(sha256(name))`.
    pub(crate) fn redis_key(&self, name: &str) -> String {
        let verbatim = name.len() <= self.max_len
            && name
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != HASHED as u8);
        if verbatim {
            let mut key = String::with_capacity(self.namespace.len() + name.len());
            key.push_str(&self.namespace);
            key.push_str(name);
            return key;
        }
        let digest = Sha256::digest(name.as_bytes());
        let mut key = String::with_capacity(self.namespace.len() + 1 + 64);
        key.push_str(&self.namespace);
        key.push(HASHED);
        for byte in digest {
            key.push_str(&format!("{byte:02x}"));
        }
        key
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(uri: &str, headers: &[(&str, &[u8])]) -> Parts {
        let mut builder = http::Request::builder().uri(uri);
        for (name, value) in headers {
            builder = builder.header(*name, http::HeaderValue::from_bytes(value).unwrap());
        }
        builder.body(()).unwrap().into_parts().0
    }

    fn format() -> KeyFormat {
        KeyFormat {
            namespace: "ns:".into(),
            max_len: 16,
        }
    }

    #[test]
    fn query_param_found_missing_empty_repeated_and_undecodable() {
        let q = query("resource_id");
        let get = |uri: &str| q.extract(&parts(uri, &[]));
        assert_eq!(get("/lock?resource_id=42"), Ok(Some("42".into())));
        assert_eq!(
            get("/lock?a=1&resource_id=x+y%2Fz&b"),
            Ok(Some("x y/z".into()))
        );
        assert_eq!(get("/lock?resource%5Fid=7"), Ok(Some("7".into())));
        assert_eq!(get("/lock"), Ok(None));
        assert_eq!(get("/lock?other=1"), Ok(None));
        assert_eq!(get("/lock?resource_idx=1"), Ok(None));
        let problem = |uri: &str| get(uri).unwrap_err().problem().clone();
        assert_eq!(problem("/lock?resource_id="), KeyProblem::Empty);
        assert_eq!(problem("/lock?resource_id"), KeyProblem::Empty);
        assert_eq!(
            problem("/lock?resource_id=1&resource_id=2"),
            KeyProblem::Repeated
        );
        assert_eq!(problem("/lock?resource_id=%FF"), KeyProblem::NotUtf8);
        assert_eq!(
            get("/lock?resource_id=%FF").unwrap_err().to_string(),
            "query parameter `resource_id` is not UTF-8 once percent-decoded"
        );
    }

    #[test]
    fn header_found_missing_repeated_and_binary() {
        let h = header(HeaderName::from_static("x-resource"));
        assert_eq!(
            h.extract(&parts("/", &[("x-resource", b"a")])),
            Ok(Some("a".into()))
        );
        assert_eq!(h.extract(&parts("/", &[])), Ok(None));
        let problem = |headers: &[(&str, &[u8])]| {
            h.extract(&parts("/", headers))
                .unwrap_err()
                .problem()
                .clone()
        };
        assert_eq!(
            problem(&[("x-resource", b"a"), ("x-resource", b"b")]),
            KeyProblem::Repeated
        );
        assert_eq!(problem(&[("x-resource", b"\xff\xfe")]), KeyProblem::NotText);
        assert_eq!(problem(&[("x-resource", b"")]), KeyProblem::Empty);
    }

    #[test]
    fn path_is_decoded_so_encodings_share_a_lock() {
        let p = path();
        assert_eq!(
            p.extract(&parts("/orders/%34%32", &[])),
            p.extract(&parts("/orders/42", &[]))
        );
        assert_eq!(
            p.extract(&parts("/x/%C3", &[])).unwrap_err().problem(),
            &KeyProblem::NotUtf8
        );
    }

    #[test]
    fn path_param_matches_template() {
        let id = path_param("/orders/{id}/items", "id");
        assert_eq!(
            id.extract(&parts("/orders/4%32/items", &[])),
            Ok(Some("42".into()))
        );
        assert_eq!(id.extract(&parts("/orders/42/other", &[])), Ok(None));
        assert_eq!(id.extract(&parts("/users/42/items", &[])), Ok(None));
        assert_eq!(id.extract(&parts("/orders", &[])), Ok(None));
        assert_eq!(id.extract(&parts("/orders/42/items/more", &[])), Ok(None));
        let rest = path_param("/files/{*path}", "path");
        assert_eq!(
            rest.extract(&parts("/files/a/b.txt", &[])),
            Ok(Some("a/b.txt".into()))
        );
        assert_eq!(
            rest.extract(&parts("/files/", &[])).unwrap_err().problem(),
            &KeyProblem::Empty
        );
        assert_eq!(
            path_param("/orders/{id}", "other").extract(&parts("/orders/1", &[])),
            Ok(None)
        );
    }

    #[test]
    fn closures_may_answer_in_three_shapes() {
        let some = from_fn(|p: &Parts| p.uri.path().to_owned());
        let none = from_fn(|_: &Parts| None::<String>);
        let refuse =
            from_fn(|_: &Parts| Err::<Option<String>, _>(KeyRejection::other("tenant", "unknown")));
        let request = parts("/a", &[]);
        assert_eq!(some.extract(&request), Ok(Some("/a".into())));
        assert_eq!(none.extract(&request), Ok(None));
        assert_eq!(
            refuse.extract(&request).unwrap_err().to_string(),
            "tenant: unknown"
        );
    }

    #[test]
    fn short_printable_names_are_kept_verbatim() {
        assert_eq!(format().redis_key("orders/42"), "ns:orders/42");
    }

    #[test]
    fn long_spaced_control_or_non_ascii_names_are_hashed() {
        for name in [
            "x".repeat(17),
            "a b".to_owned(),
            "a\r\nFLUSHALL".to_owned(),
            "zero\0byte".to_owned(),
            "café".to_owned(),
            "#looks-hashed".to_owned(),
        ] {
            let key = format().redis_key(&name);
            assert!(key.starts_with("ns:#"), "{name:?} → {key}");
            assert_eq!(key.len(), "ns:#".len() + 64);
            assert!(key.bytes().all(|b| b.is_ascii_graphic()), "{key}");
        }
        // Stable across calls and distinct per name.
        assert_eq!(format().redis_key("a b"), format().redis_key("a b"));
        assert_ne!(format().redis_key("a b"), format().redis_key("a  b"));
    }

    #[test]
    fn a_huge_name_gives_a_bounded_key() {
        let key = format().redis_key(&"A".repeat(1 << 20));
        assert_eq!(key.len(), 68);
    }
}
