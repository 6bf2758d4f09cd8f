//! The node's shared HTTP cache, for the responses of routes that opt in.
//!
//! Freshness, storability, `Vary`, `Age` and revalidation follow RFC 9111 for a shared cache,
//! by `http-cache-semantics` (`s-maxage`, `max-age`, `Expires`, heuristic freshness,
//! `no-store`, `private`, `no-cache`, `must-revalidate`, `proxy-revalidate`, requests with
//! `Authorization`). On top of it, here:
//!
//! - `CDN-Cache-Control` (RFC 9213) replaces `Cache-Control` for this cache's decisions; the
//!   client still gets both as the function sent them;
//! - `stale-while-revalidate` and `stale-if-error` (RFC 5861), unless the response says
//!   `must-revalidate`, `proxy-revalidate` or `no-cache`;
//! - `Cache-Status` (RFC 9211) on every response of a caching route;
//! - a `Set-Cookie` response is stored only when it is explicitly `public`, and then without
//!   its `Set-Cookie`: a cookie is never handed to another client;
//! - surrogate keys (`Surrogate-Key`, space-separated; `Cache-Tag`, comma-separated), kept with
//!   the stored response for purging and stripped before any client sees them;
//! - request collapsing: concurrent misses for one URL make one request to the function, the
//!   others wait for its response and are answered from the cache;
//! - invalidation of a URL (and its `Location` and `Content-Location`) after an unsafe method
//!   succeeds on it (RFC 9111 §4.4).
//!
//! Stored bodies are held whole in memory (moka, weighed by bytes, evicting by TinyLFU when
//! full); a response larger than the object limit passes through unstored. The hit path
//! takes a read of the map, clones the stored headers and hands out the body by reference
//! count: no instance, no copy of the body.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt as _;
use http_cache_semantics::{AfterResponse, BeforeRequest, CacheOptions, CachePolicy};
use tokio::sync::watch;

use crate::ResponseBody;
use crate::error::RequestError;

/// Default memory for stored responses.
pub const DEFAULT_SIZE_BYTES: u64 = 256 << 20;
/// Most variants (`Vary`) kept for one URL.
const MAX_VARIANTS: usize = 8;
/// The name this cache goes by in `Cache-Status`.
const NAME: &str = "edge";

const CDN_CACHE_CONTROL: HeaderName = HeaderName::from_static("cdn-cache-control");
const CACHE_STATUS: HeaderName = HeaderName::from_static("cache-status");
const SURROGATE_KEY: HeaderName = HeaderName::from_static("surrogate-key");
const CACHE_TAG: HeaderName = HeaderName::from_static("cache-tag");

/// Where a stored response lives: the request's host (lowercase, without port) and its
/// target (path and query); for a function's own outbound fetches also the function, scheme
/// and port, so that no function is answered from what another fetched.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    host: Box<str>,
    target: Box<str>,
    fetched_by: Option<Box<str>>,
}

impl Key {
    /// The key of `host` (as routed) and `target`.
    pub fn new(host: &str, target: &str) -> Self {
        let host = crate::router::host_without_port(host).to_ascii_lowercase();
        Self {
            host: host.into(),
            target: target.into(),
            fetched_by: None,
        }
    }

    /// The key of `uri` (absolute) as fetched by `function`.
    pub fn fetched(function: &str, uri: &http::Uri) -> Self {
        let https = uri.scheme() == Some(&http::uri::Scheme::HTTPS);
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        Self {
            host: uri.host().unwrap_or_default().to_ascii_lowercase().into(),
            target: uri.path_and_query().map_or("/", |p| p.as_str()).into(),
            fetched_by: Some(
                format!("{function} {} {port}", uri.scheme_str().unwrap_or("")).into(),
            ),
        }
    }

    /// The request's host.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Its path and query.
    pub fn target(&self) -> &str {
        &self.target
    }
}

/// One stored response.
struct Stored {
    policy: CachePolicy,
    status: StatusCode,
    /// What clients get, minus `Age` and `Cache-Status` (set per answer).
    headers: HeaderMap,
    body: Bytes,
    /// When it stops being fresh.
    fresh_until: SystemTime,
    /// How long after that it may still be served while it is revalidated, or when the
    /// function fails.
    while_revalidate: Duration,
    if_error: Duration,
    /// The request headers `Vary` names, as the request that stored it had them.
    selected: Selected,
    /// Surrogate keys, for purging.
    keys: Box<[Box<str>]>,
    /// The function that made it.
    function: Arc<str>,
    /// The `Age` and `Cache-Status` values of the last plain hit, for the age and ttl they
    /// were made for: hits within the same second reuse them instead of formatting again.
    hit_headers: Mutex<Option<HitHeaders>>,
}

/// The headers of a plain hit at one age and ttl: the stored ones, `Age`, `Cache-Status`, and
/// an empty `x-request-id` that the request path fills in (so no header is added to the map
/// afterwards, which would grow it).
struct HitHeaders {
    age: u64,
    ttl: i64,
    headers: HeaderMap,
}

/// Placeholder of the request id in [`HitHeaders`].
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Seconds from `now` to `fresh_until`, rounded: negative once stale (RFC 9211 §2.4).
fn ttl(fresh_until: SystemTime, now: SystemTime) -> i64 {
    match fresh_until.duration_since(now) {
        Ok(left) => left.as_secs_f64().round() as i64,
        Err(past) => -(past.duration().as_secs_f64().round() as i64).max(1),
    }
}

/// Request header values a response varies on.
type Selected = Box<[(Box<str>, Option<HeaderValue>)]>;

/// The values of the headers `response` varies on, in `request`.
fn selected(request: &HeaderMap, response: &HeaderMap) -> Selected {
    let mut selected = Vec::new();
    for value in response.get_all(header::VARY) {
        let Ok(value) = value.to_str() else { continue };
        for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let name = name.to_ascii_lowercase();
            let value = request.get(name.as_str()).cloned();
            selected.push((name.into(), value));
        }
    }
    selected.into()
}

impl Stored {
    /// Whether a request with these headers selects this response (RFC 9111 §4.1); `Vary: *`
    /// selects nothing.
    fn selects(&self, request: &HeaderMap) -> bool {
        self.selected
            .iter()
            .all(|(name, value)| &**name != "*" && request.get(&**name) == value.as_ref())
    }

    fn weight(&self) -> u64 {
        let headers: usize = self
            .headers
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + 32)
            .sum();
        self.body.len() as u64 + headers as u64 + 512
    }

    /// Seconds left fresh (rounded); negative once stale.
    fn ttl(&self, now: SystemTime) -> i64 {
        ttl(self.fresh_until, now)
    }

    fn staleness(&self, now: SystemTime) -> Duration {
        now.duration_since(self.fresh_until).unwrap_or_default()
    }

    /// The answer to a plain fresh hit: as [`Self::answer`] with `hit; ttl=N`, reusing the
    /// header values of the previous hit when its age and ttl are the same.
    fn answer_hit(&self, head_only: bool, now: SystemTime) -> Response<ResponseBody> {
        let age = self.policy.age(now).as_secs();
        let ttl = self.ttl(now);
        let memo = self.hit_headers.lock().ok().and_then(|memo| {
            memo.as_ref()
                .filter(|memo| memo.age == age && memo.ttl == ttl)
                .map(|memo| memo.headers.clone())
        });
        if let Some(headers) = memo {
            let mut response = Response::new(if head_only {
                empty()
            } else {
                full(self.body.clone())
            });
            *response.status_mut() = self.status;
            *response.headers_mut() = headers;
            return response;
        }
        let mut status = String::with_capacity(16);
        {
            use std::fmt::Write as _;
            let _ = write!(status, "hit; ttl={ttl}");
        }
        let response = self.answer(head_only, now, &status);
        if let Ok(mut memo) = self.hit_headers.lock() {
            let mut headers = response.headers().clone();
            headers.insert(X_REQUEST_ID, HeaderValue::from_static(""));
            *memo = Some(HitHeaders { age, ttl, headers });
        }
        response
    }

    /// The answer to a client: stored status, headers and body, with `Age` and `Cache-Status`.
    fn answer(&self, head_only: bool, now: SystemTime, status: &str) -> Response<ResponseBody> {
        let body = if head_only {
            empty()
        } else {
            full(self.body.clone())
        };
        let mut response = Response::new(body);
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.clone_from(&self.headers);
        headers.insert(
            header::AGE,
            HeaderValue::from(self.policy.age(now).as_secs()),
        );
        set_cache_status(headers, status);
        response
    }
}

/// The variants of one URL, selected by `Vary`.
type Variants = Arc<[Arc<Stored>]>;

/// The function behind a route, called to fill the cache or revalidate it: any number of
/// times, with a GET or HEAD without body.
pub(crate) type Fetch = Arc<
    dyn Fn(
            Request<http_body_util::Empty<Bytes>>,
        )
            -> futures::future::BoxFuture<'static, Result<Response<ResponseBody>, RequestError>>
        + Send
        + Sync,
>;

/// The node's cache.
pub struct Cache {
    store: moka::sync::Cache<Key, Variants>,
    /// Misses being fetched now, by key: followers wait for the leader's response.
    in_flight: Mutex<HashMap<Key, watch::Receiver<bool>>>,
    max_object_bytes: u64,
    options: CacheOptions,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("entries", &self.store.entry_count())
            .field("bytes", &self.store.weighted_size())
            .finish_non_exhaustive()
    }
}

/// What to purge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Purge {
    /// One URL, every variant.
    Url {
        /// Host, as clients send it.
        host: String,
        /// Path and query.
        target: String,
    },
    /// Every response tagged with this surrogate key.
    SurrogateKey(String),
    /// Everything a function made.
    Function(String),
    /// Everything.
    All,
}

impl Purge {
    /// The purge a control plane sent; `None` for a URL without a host.
    pub fn from_wire(purge: &edge_wire::Purge) -> Option<Self> {
        Some(match purge {
            edge_wire::Purge::Url(url) => {
                let uri: http::Uri = url.parse().ok()?;
                Self::Url {
                    host: uri.host()?.to_owned(),
                    target: uri.path_and_query().map_or("/", |p| p.as_str()).to_owned(),
                }
            }
            edge_wire::Purge::SurrogateKey(key) => Self::SurrogateKey(key.clone()),
            edge_wire::Purge::Function(name) => Self::Function(name.clone()),
            edge_wire::Purge::All => Self::All,
        })
    }
}

impl Cache {
    /// A cache holding up to `size_bytes` of responses, none larger than `max_object_bytes`.
    pub fn new(size_bytes: u64, max_object_bytes: u64) -> Self {
        let store = moka::sync::Cache::builder()
            .max_capacity(size_bytes)
            .weigher(|_key: &Key, variants: &Variants| {
                let weight: u64 = variants.iter().map(|stored| stored.weight()).sum();
                u32::try_from(weight).unwrap_or(u32::MAX)
            })
            .support_invalidation_closures()
            .build();
        Self {
            store,
            in_flight: Mutex::new(HashMap::new()),
            max_object_bytes: max_object_bytes.min(size_bytes),
            options: CacheOptions::default(),
        }
    }

    /// Bytes held now (after pending evictions are applied).
    pub fn weighted_size(&self) -> u64 {
        self.store.run_pending_tasks();
        self.store.weighted_size()
    }

    /// Responses held now (URLs, each with its variants).
    pub fn entry_count(&self) -> u64 {
        self.store.entry_count()
    }

    /// Removes what `purge` names; returns at once, and nothing purged is served after.
    pub fn purge(&self, purge: &Purge) {
        match purge {
            Purge::Url { host, target } => {
                let key = Key::new(host, target);
                self.store.invalidate(&key);
                // The same URL fetched by functions, under their own keys.
                let _ = self.store.invalidate_entries_if(move |stored, _| {
                    stored.fetched_by.is_some()
                        && stored.host == key.host
                        && stored.target == key.target
                });
            }
            Purge::All => self.store.invalidate_all(),
            Purge::SurrogateKey(key) => {
                let key: Box<str> = key.as_str().into();
                let _ = self.store.invalidate_entries_if(move |_, variants| {
                    variants.iter().any(|stored| stored.keys.contains(&key))
                });
            }
            Purge::Function(name) => {
                let name = name.clone();
                let _ = self.store.invalidate_entries_if(move |_, variants| {
                    variants.iter().any(|stored| *stored.function == *name)
                });
            }
        }
    }

    /// After an unsafe method succeeded on `key` (RFC 9111 §4.4): drops it, and the URLs of
    /// the response's `Location` and `Content-Location` on the same host.
    pub(crate) fn invalidate_after(&self, key: &Key, response: &HeaderMap) {
        self.store.invalidate(key);
        for name in [header::LOCATION, header::CONTENT_LOCATION] {
            let Some(target) = response.get(name).and_then(|v| v.to_str().ok()) else {
                continue;
            };
            let Ok(uri) = target.parse::<http::Uri>() else {
                continue;
            };
            let same_host = uri
                .host()
                .is_none_or(|host| host.eq_ignore_ascii_case(key.host()));
            if let (true, Some(path)) = (same_host, uri.path_and_query()) {
                self.store.invalidate(&Key::new(key.host(), path.as_str()));
            }
        }
    }

    /// The hit path: a fresh stored response for a request with no caching directives of its
    /// own (no `Cache-Control`, no `Pragma`) whose `Vary` headers match, answered without
    /// building anything else. Anything less plain is left to [`Self::serve`], which asks the
    /// full RFC 9111 policy.
    pub(crate) fn fresh(
        &self,
        key: &Key,
        request: &HeaderMap,
        head_only: bool,
    ) -> Option<Response<ResponseBody>> {
        if request.contains_key(header::CACHE_CONTROL) || request.contains_key(header::PRAGMA) {
            return None;
        }
        let variants = self.store.get(key)?;
        let stored = variants.iter().find(|stored| stored.selects(request))?;
        let now = SystemTime::now();
        if now >= stored.fresh_until {
            return None;
        }
        Some(stored.answer_hit(head_only, now))
    }

    /// Answers a GET or HEAD (`request`, with the host it was routed by) from the cache when
    /// it can, else from `origin`, storing what may be stored.
    pub(crate) async fn serve(
        self: &Arc<Self>,
        key: Key,
        request: http::request::Parts,
        request_id: &str,
        function: Arc<str>,
        origin: Fetch,
    ) -> Response<ResponseBody> {
        let head_only = request.method == Method::HEAD;
        let view = policy_request(&key, &request);
        let mut collapsed = false;
        loop {
            let now = SystemTime::now();
            let found = self.lookup(&key, &view, now);
            match found {
                Found::Fresh(stored) => {
                    let status = if collapsed {
                        format!("hit; ttl={}; collapsed", stored.ttl(now))
                    } else {
                        format!("hit; ttl={}", stored.ttl(now))
                    };
                    return stored.answer(head_only, now, &status);
                }
                Found::Stale(stored, revalidation) => {
                    if stored.staleness(now) <= stored.while_revalidate {
                        // RFC 5861 §3: serve it, refresh it behind the client's back.
                        self.refresh_behind(
                            key.clone(),
                            view.clone(),
                            &stored,
                            *revalidation,
                            request_id,
                            function.clone(),
                            origin.clone(),
                        );
                        let status = format!(
                            "hit; ttl={}; detail=stale-while-revalidate",
                            stored.ttl(now)
                        );
                        return stored.answer(head_only, now, &status);
                    }
                    let Some(leader) = self.lead(&key, collapsed).await else {
                        collapsed = true;
                        continue;
                    };
                    return self
                        .revalidate(
                            key,
                            view,
                            stored,
                            *revalidation,
                            Revalidation {
                                head_only,
                                request_id,
                                function,
                                origin,
                            },
                            leader,
                        )
                        .await;
                }
                Found::Miss { vary } => {
                    let Some(leader) = self.lead(&key, collapsed).await else {
                        collapsed = true;
                        continue;
                    };
                    let fwd = if vary { "vary-miss" } else { "uri-miss" };
                    let mut upstream = request.clone();
                    // A HEAD is filled by a GET, so that later GETs find the body.
                    upstream.method = Method::GET;
                    upstream.headers.remove(header::IF_NONE_MATCH);
                    upstream.headers.remove(header::IF_MODIFIED_SINCE);
                    let fetched =
                        origin(Request::from_parts(upstream, http_body_util::Empty::new())).await;
                    return match fetched {
                        Ok(response) => self.admit(
                            &key,
                            &view,
                            response,
                            head_only,
                            function,
                            fwd,
                            Some(leader),
                        ),
                        Err(e) => {
                            drop(leader);
                            let mut response = e.into_response(request_id);
                            set_cache_status(response.headers_mut(), &format!("fwd={fwd}"));
                            response
                        }
                    };
                }
            }
        }
    }

    fn lookup(&self, key: &Key, view: &http::request::Parts, now: SystemTime) -> Found {
        let Some(variants) = self.store.get(key) else {
            return Found::Miss { vary: false };
        };
        for stored in variants.iter() {
            match stored.policy.before_request(view, now) {
                BeforeRequest::Fresh(_) => return Found::Fresh(stored.clone()),
                BeforeRequest::Stale {
                    request,
                    matches: true,
                } => return Found::Stale(stored.clone(), Box::new(request)),
                BeforeRequest::Stale { matches: false, .. } => {}
            }
        }
        Found::Miss { vary: true }
    }

    /// Becomes the one request fetching `key`, or waits for the one that is and returns
    /// `None` (then the caller looks again). A request that has waited once leads without
    /// waiting again.
    async fn lead(self: &Arc<Self>, key: &Key, waited: bool) -> Option<Leader> {
        loop {
            if let Some(leader) = Leader::register(self, key) {
                return Some(leader);
            }
            let waiting = {
                let in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
                in_flight.get(key).cloned()
            };
            match waiting {
                // Another request fetches it: wait for it to end (its sender closes).
                Some(mut done) if !waited => {
                    let _ = done.wait_for(|done| *done).await;
                    return None;
                }
                // Waited once already: fetch alongside rather than queue again.
                Some(_) => return Some(Leader::alongside(self)),
                None => continue,
            }
        }
    }

    async fn revalidate(
        self: &Arc<Self>,
        key: Key,
        view: http::request::Parts,
        stored: Arc<Stored>,
        revalidation: http::request::Parts,
        Revalidation {
            head_only,
            request_id,
            function,
            origin,
        }: Revalidation<'_>,
        leader: Leader,
    ) -> Response<ResponseBody> {
        let mut conditional = revalidation;
        conditional.method = Method::GET;
        let fetched = origin(Request::from_parts(
            conditional.clone(),
            http_body_util::Empty::new(),
        ))
        .await;
        let now = SystemTime::now();
        let failed = match &fetched {
            Ok(response) => response
                .status()
                .is_server_error()
                .then(|| response.status().as_u16()),
            Err(e) => Some(e.status().as_u16()),
        };
        if let Some(code) = failed
            && stored.staleness(now) <= stored.if_error
        {
            // RFC 5861 §4: the function failed; the stale response is better than none.
            drop(leader);
            let status = format!(
                "fwd=stale; fwd-status={code}; ttl={}; detail=stale-if-error",
                stored.ttl(now)
            );
            return stored.answer(head_only, now, &status);
        }
        let response = match fetched {
            Ok(response) => response,
            Err(e) => {
                drop(leader);
                let mut response = e.into_response(request_id);
                set_cache_status(response.headers_mut(), "fwd=stale");
                return response;
            }
        };
        if response.status() == StatusCode::NOT_MODIFIED {
            let (parts, _) = response.into_parts();
            if let Some(updated) = self.refreshed(&key, &stored, &conditional, &parts, now) {
                drop(leader);
                let status = format!(
                    "fwd=stale; fwd-status=304; stored; ttl={}",
                    updated.ttl(now)
                );
                return updated.answer(head_only, now, &status);
            }
            // A 304 that does not match what is stored: pass it on, as RFC 9111 §4.3.4 allows.
            drop(leader);
            let mut response = Response::from_parts(parts, empty());
            set_cache_status(response.headers_mut(), "fwd=stale; fwd-status=304");
            return response;
        }
        self.admit(
            &key,
            &view,
            response,
            head_only,
            function,
            "stale",
            Some(leader),
        )
    }

    /// Applies a 304 to the stored response: its headers updated, a new freshness.
    fn refreshed(
        &self,
        key: &Key,
        stored: &Arc<Stored>,
        request: &http::request::Parts,
        response: &http::response::Parts,
        now: SystemTime,
    ) -> Option<Arc<Stored>> {
        let view_response = effective(&response.headers);
        let mut view = http::response::Parts::clone(response);
        view.headers = view_response;
        let AfterResponse::NotModified(policy, _) =
            stored.policy.after_response(request, &view, now)
        else {
            return None;
        };
        let mut headers = stored.headers.clone();
        for (name, value) in &response.headers {
            if !is_not_stored(name) && name != header::CONTENT_LENGTH {
                headers.insert(name.clone(), value.clone());
            }
        }
        let directives = directives(&effective(&headers));
        let updated = Arc::new(Stored {
            fresh_until: now + policy.time_to_live(now),
            policy,
            status: stored.status,
            headers,
            body: stored.body.clone(),
            while_revalidate: directives.while_revalidate,
            if_error: directives.if_error,
            selected: stored.selected.clone(),
            keys: stored.keys.clone(),
            function: stored.function.clone(),
            hit_headers: Mutex::new(None),
        });
        self.replace_variant(key, stored, updated.clone());
        Some(updated)
    }

    fn replace_variant(&self, key: &Key, old: &Arc<Stored>, new: Arc<Stored>) {
        let variants = self.store.get(key).map(|v| v.to_vec()).unwrap_or_default();
        let mut kept: Vec<Arc<Stored>> = variants
            .into_iter()
            .filter(|stored| !Arc::ptr_eq(stored, old))
            .collect();
        kept.insert(0, new);
        kept.truncate(MAX_VARIANTS);
        self.store.insert(key.clone(), kept.into());
    }

    /// Refreshes a stale response in the background (collapsed with any other fetch of it).
    #[allow(clippy::too_many_arguments)]
    fn refresh_behind(
        self: &Arc<Self>,
        key: Key,
        view: http::request::Parts,
        stored: &Arc<Stored>,
        revalidation: http::request::Parts,
        request_id: &str,
        function: Arc<str>,
        origin: Fetch,
    ) {
        let Some(leader) = Leader::register(self, &key) else {
            return;
        };
        let cache = self.clone();
        let stored = stored.clone();
        let request_id: Arc<str> = request_id.into();
        tokio::spawn(async move {
            let context = Revalidation {
                head_only: true,
                request_id: &request_id,
                function,
                origin,
            };
            let response = cache
                .revalidate(key, view, stored, revalidation, context, leader)
                .await;
            // Drive a new body into the cache; nobody reads it here.
            let _ = response.into_body().collect().await;
        });
    }

    /// A response from the function: stored when RFC 9111 and the object limit allow, and
    /// handed to the client either way (without its body for a HEAD).
    #[allow(clippy::too_many_arguments)]
    fn admit(
        self: &Arc<Self>,
        key: &Key,
        view: &http::request::Parts,
        response: Response<ResponseBody>,
        head_only: bool,
        function: Arc<str>,
        fwd: &str,
        leader: Option<Leader>,
    ) -> Response<ResponseBody> {
        let (mut parts, body) = response.into_parts();
        let keys = surrogate_keys(&parts.headers);
        let decision = self.storable(view, &parts);
        for name in [SURROGATE_KEY, CACHE_TAG] {
            parts.headers.remove(name);
        }
        let now = SystemTime::now();
        let (policy, mut stored_headers) = match decision {
            Ok(decision) => decision,
            Err(why) => {
                drop(leader);
                set_cache_status(&mut parts.headers, &format!("fwd={fwd}; detail={why}"));
                let body = if head_only { empty() } else { body };
                return Response::from_parts(parts, body);
            }
        };
        stored_headers.remove(header::SET_COOKIE);
        let directives = directives(&effective(&parts.headers));
        let pending = Pending {
            cache: self.clone(),
            key: key.clone(),
            status: parts.status,
            selected: selected(&view.headers, &parts.headers),
            headers: stored_headers,
            fresh_until: now + policy.time_to_live(now),
            policy,
            while_revalidate: directives.while_revalidate,
            if_error: directives.if_error,
            keys,
            function,
            _leader: leader,
        };
        let ttl = ttl(pending.fresh_until, now);
        set_cache_status(&mut parts.headers, &format!("fwd={fwd}; stored; ttl={ttl}"));
        let expected = parts
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let storing = StoringBody {
            inner: body,
            buffer: BytesMut::new(),
            limit: self.max_object_bytes,
            expected,
            pending: Some(pending),
        };
        if head_only {
            // The client wants no body; the cache does: read it here.
            tokio::spawn(async move {
                let _ = storing.collect().await;
            });
            return Response::from_parts(parts, empty());
        }
        Response::from_parts(
            parts,
            http_body_util::combinators::UnsyncBoxBody::new(storing),
        )
    }

    /// The policy and the headers to store, or why the response is not stored.
    fn storable(
        &self,
        view: &http::request::Parts,
        response: &http::response::Parts,
    ) -> Result<(CachePolicy, HeaderMap), &'static str> {
        let effective_headers = effective(&response.headers);
        let mut policy_view = response.clone();
        policy_view.headers = effective_headers;
        let policy = CachePolicy::new_options(view, &policy_view, SystemTime::now(), self.options);
        if !policy.is_storable() {
            return Err("not-storable");
        }
        let directives = directives(&policy_view.headers);
        if response.headers.contains_key(header::SET_COOKIE) && !directives.public {
            return Err("set-cookie");
        }
        let validators = response.headers.contains_key(header::ETAG)
            || response.headers.contains_key(header::LAST_MODIFIED);
        if policy.time_to_live(SystemTime::now()).is_zero() && !validators {
            return Err("no-freshness");
        }
        if let Some(length) = response
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            && length > self.max_object_bytes
        {
            return Err("too-large");
        }
        let mut headers = HeaderMap::with_capacity(response.headers.len());
        for (name, value) in &response.headers {
            if !is_not_stored(name) {
                headers.append(name.clone(), value.clone());
            }
        }
        Ok((policy, headers))
    }

    fn insert(&self, key: &Key, stored: Stored) {
        if stored.weight() > self.max_object_bytes {
            return;
        }
        let stored = Arc::new(stored);
        let mut variants: Vec<Arc<Stored>> = Vec::with_capacity(2);
        variants.push(stored.clone());
        if let Some(existing) = self.store.get(key) {
            // Keep the other variants: those selected by other request headers.
            for old in existing.iter() {
                if old.selected != stored.selected {
                    variants.push(old.clone());
                }
            }
        }
        variants.truncate(MAX_VARIANTS);
        self.store.insert(key.clone(), variants.into());
    }
}

/// What a revalidation needs besides the stored response.
struct Revalidation<'a> {
    head_only: bool,
    request_id: &'a str,
    function: Arc<str>,
    origin: Fetch,
}

enum Found {
    Fresh(Arc<Stored>),
    /// Stale, with the conditional request that revalidates it.
    Stale(Arc<Stored>, Box<http::request::Parts>),
    /// Nothing stored for this URL, or (`vary`) nothing for these request headers.
    Miss {
        vary: bool,
    },
}

/// The one request fetching a key; when it is dropped, the requests waiting for it look
/// again.
struct Leader {
    cache: Arc<Cache>,
    /// The key it registered under; `None` for a fetch alongside the registered one.
    key: Option<Key>,
    /// Dropped after the map entry is gone: waiters see the channel close and look again.
    _done: Option<watch::Sender<bool>>,
}

impl Leader {
    /// Registers a fetch of `key`, unless one is running (then `None`).
    fn register(cache: &Arc<Cache>, key: &Key) -> Option<Self> {
        let mut in_flight = cache.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        if in_flight.contains_key(key) {
            return None;
        }
        let (done, waiting) = watch::channel(false);
        in_flight.insert(key.clone(), waiting);
        Some(Self {
            cache: cache.clone(),
            key: Some(key.clone()),
            _done: Some(done),
        })
    }

    fn alongside(cache: &Arc<Cache>) -> Self {
        Self {
            cache: cache.clone(),
            key: None,
            _done: None,
        }
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        if let Some(key) = &self.key {
            let mut in_flight = self
                .cache
                .in_flight
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            in_flight.remove(key);
        }
    }
}

/// A response on its way to the client, to be stored once its body is complete.
struct Pending {
    cache: Arc<Cache>,
    key: Key,
    status: StatusCode,
    headers: HeaderMap,
    policy: CachePolicy,
    fresh_until: SystemTime,
    while_revalidate: Duration,
    if_error: Duration,
    selected: Selected,
    keys: Box<[Box<str>]>,
    function: Arc<str>,
    _leader: Option<Leader>,
}

/// Passes the function's body to the client and keeps a copy; stores the response when the
/// body ends whole and within the object limit. Dropped early (the client left, the body
/// failed), nothing is stored.
struct StoringBody {
    inner: ResponseBody,
    buffer: BytesMut,
    limit: u64,
    /// The declared `content-length`: once that much has passed, the body is whole even if
    /// nobody polls it to its end (hyper stops there).
    expected: Option<u64>,
    pending: Option<Pending>,
}

impl Drop for StoringBody {
    fn drop(&mut self) {
        if self.expected == Some(self.buffer.len() as u64) {
            self.finish();
        }
    }
}

impl StoringBody {
    fn finish(&mut self) {
        let Some(pending) = self.pending.take() else {
            return;
        };
        let body = std::mem::take(&mut self.buffer).freeze();
        let stored = Stored {
            policy: pending.policy,
            status: pending.status,
            headers: pending.headers,
            body,
            fresh_until: pending.fresh_until,
            while_revalidate: pending.while_revalidate,
            if_error: pending.if_error,
            selected: pending.selected,
            keys: pending.keys,
            function: pending.function,
            hit_headers: Mutex::new(None),
        };
        pending.cache.insert(&pending.key, stored);
        // `pending._leader` drops here: waiters find the response stored.
    }
}

impl Body for StoringBody {
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref()
                    && this.pending.is_some()
                {
                    if (this.buffer.len() + data.len()) as u64 > this.limit {
                        // Too large to keep: the client still gets all of it.
                        this.pending = None;
                        this.buffer = BytesMut::new();
                    } else {
                        this.buffer.extend_from_slice(data);
                    }
                }
                if this.inner.is_end_stream() || this.expected == Some(this.buffer.len() as u64) {
                    this.finish();
                }
            }
            Poll::Ready(None) => this.finish(),
            Poll::Ready(Some(Err(_))) => this.pending = None,
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The request as the cache policy sees it: GET for HEAD (a HEAD is answered from a stored
/// GET), the target as URI, the routed host as `Host`.
fn policy_request(key: &Key, request: &http::request::Parts) -> http::request::Parts {
    let mut view = Request::new(());
    *view.method_mut() = Method::GET;
    *view.uri_mut() = key
        .target()
        .parse()
        .unwrap_or_else(|_| http::Uri::from_static("/"));
    let headers = view.headers_mut();
    headers.clone_from(&request.headers);
    if let Ok(host) = HeaderValue::from_str(key.host()) {
        headers.insert(header::HOST, host);
    }
    view.into_parts().0
}

/// The headers this cache decides by: `CDN-Cache-Control`, when present, in place of
/// `Cache-Control` (RFC 9213 §2.1).
fn effective(headers: &HeaderMap) -> HeaderMap {
    let mut effective = headers.clone();
    if headers.contains_key(CDN_CACHE_CONTROL) {
        effective.remove(header::CACHE_CONTROL);
        for value in headers.get_all(CDN_CACHE_CONTROL) {
            effective.append(header::CACHE_CONTROL, value.clone());
        }
        // Freshness then comes from CDN-Cache-Control only, not from Expires.
        effective.remove(header::EXPIRES);
    }
    effective
}

/// The directives this module acts on beyond the policy.
struct Directives {
    public: bool,
    while_revalidate: Duration,
    if_error: Duration,
}

fn directives(headers: &HeaderMap) -> Directives {
    let mut directives = Directives {
        public: false,
        while_revalidate: Duration::ZERO,
        if_error: Duration::ZERO,
    };
    let mut forbids_stale = false;
    for value in headers.get_all(header::CACHE_CONTROL) {
        let Ok(value) = value.to_str() else { continue };
        for directive in value.split(',') {
            let (name, argument) = match directive.split_once('=') {
                Some((name, argument)) => (name.trim(), Some(argument.trim().trim_matches('"'))),
                None => (directive.trim(), None),
            };
            let seconds = || {
                argument
                    .and_then(|a| a.parse::<u64>().ok())
                    .map(Duration::from_secs)
                    .unwrap_or_default()
            };
            match name.to_ascii_lowercase().as_str() {
                "public" => directives.public = true,
                "stale-while-revalidate" => directives.while_revalidate = seconds(),
                "stale-if-error" => directives.if_error = seconds(),
                "must-revalidate" | "proxy-revalidate" | "no-cache" => forbids_stale = true,
                _ => {}
            }
        }
    }
    if forbids_stale {
        // RFC 9111 §5.2.2.2: never served stale, whatever RFC 5861's directives say.
        directives.while_revalidate = Duration::ZERO;
        directives.if_error = Duration::ZERO;
    }
    directives
}

/// `Surrogate-Key` (space-separated) and `Cache-Tag` (comma-separated) values.
fn surrogate_keys(headers: &HeaderMap) -> Box<[Box<str>]> {
    let mut keys: Vec<Box<str>> = Vec::new();
    for (name, separator) in [(SURROGATE_KEY, ' '), (CACHE_TAG, ',')] {
        for value in headers.get_all(name) {
            let Ok(value) = value.to_str() else { continue };
            for key in value
                .split(separator)
                .map(str::trim)
                .filter(|k| !k.is_empty())
            {
                if !keys.iter().any(|k| **k == *key) {
                    keys.push(key.into());
                }
            }
        }
    }
    keys.into()
}

/// Response headers never stored: hop-by-hop ones (RFC 9110 §7.6.1), the request id (each
/// response gets its own) and the surrogate keys (kept aside).
fn is_not_stored(name: &HeaderName) -> bool {
    crate::origin::is_hop_by_hop(name)
        || name == "x-request-id"
        || name == SURROGATE_KEY
        || name == CACHE_TAG
}

/// Removes the surrogate keys from a response of a caching route that was not stored (an
/// unsafe method's): clients never see them.
pub(crate) fn strip_surrogate_keys(headers: &mut HeaderMap) {
    headers.remove(SURROGATE_KEY);
    headers.remove(CACHE_TAG);
}

/// Puts this cache's entry first in `Cache-Status` (RFC 9211 §2: the cache nearest the
/// client comes last; a function's upstream caches stay before it).
/// Whether `response` is a stored one served because the origin failed (RFC 5861 §4).
pub(crate) fn served_stale_on_error(response: &Response<ResponseBody>) -> bool {
    response
        .headers()
        .get(CACHE_STATUS)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit(", ").next())
        .is_some_and(|ours| ours.starts_with(NAME) && ours.ends_with("detail=stale-if-error"))
}

fn set_cache_status(headers: &mut HeaderMap, status: &str) {
    let ours = format!("{NAME}; {status}");
    let value = match headers.get(CACHE_STATUS).and_then(|v| v.to_str().ok()) {
        Some(upstream) => format!("{upstream}, {ours}"),
        None => ours,
    };
    if let Ok(value) = HeaderValue::from_str(&value) {
        headers.insert(CACHE_STATUS, value);
    }
}

fn full(bytes: Bytes) -> ResponseBody {
    http_body_util::Full::new(bytes)
        .map_err(|never| match never {})
        .boxed_unsync()
}

fn empty() -> ResponseBody {
    http_body_util::Empty::new()
        .map_err(|never| match never {})
        .boxed_unsync()
}
