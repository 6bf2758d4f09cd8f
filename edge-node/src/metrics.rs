//! Prometheus metrics, served as text on the admin listener's `/metrics`.
//!
//! Handles for one function are looked up once, when the function loads, so the request path
//! touches only atomics and the per-status counter's read lock.

use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Function label used for requests that matched no route.
pub const NO_FUNCTION: &str = "-";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FunctionLabels {
    function: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    function: Arc<str>,
    status: u16,
    version: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KillLabels {
    function: Arc<str>,
    limit: &'static str,
}

type HistogramFamily = Family<FunctionLabels, Histogram, fn() -> Histogram>;

/// All metrics of one node.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    duration: HistogramFamily,
    instantiate: HistogramFamily,
    traps: Family<FunctionLabels, Counter>,
    kills: Family<KillLabels, Counter>,
    in_use: Family<FunctionLabels, Gauge>,
    cache_bytes: Gauge,
    cache_entries: Gauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

fn duration_histogram() -> Histogram {
    // 50 µs .. ~26 s.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.000_05, 2.0, 20,
    ))
}

fn instantiate_histogram() -> Histogram {
    // 1 µs .. ~32 ms.
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
        0.000_001, 2.0, 16,
    ))
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("edge");
        let requests = Family::<RequestLabels, Counter>::default();
        let duration = HistogramFamily::new_with_constructor(duration_histogram);
        let instantiate = HistogramFamily::new_with_constructor(instantiate_histogram);
        let traps = Family::<FunctionLabels, Counter>::default();
        let kills = Family::<KillLabels, Counter>::default();
        let in_use = Family::<FunctionLabels, Gauge>::default();
        registry.register(
            "requests",
            "Requests answered, by function, status and HTTP version",
            requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time from request to the end of the response body",
            duration.clone(),
        );
        registry.register(
            "instantiate_duration_seconds",
            "Time to create a fresh instance for a request",
            instantiate.clone(),
        );
        registry.register("traps", "Guest traps", traps.clone());
        registry.register(
            "limit_kills",
            "Guests killed for going past a limit (time or memory)",
            kills.clone(),
        );
        registry.register("instances_in_use", "Instances running now", in_use.clone());
        let cache_bytes = Gauge::default();
        let cache_entries = Gauge::default();
        registry.register(
            "cache_bytes",
            "Bytes of responses the cache holds",
            cache_bytes.clone(),
        );
        registry.register(
            "cache_entries",
            "URLs the cache holds responses for",
            cache_entries.clone(),
        );
        Self {
            registry,
            requests,
            duration,
            instantiate,
            traps,
            kills,
            in_use,
            cache_bytes,
            cache_entries,
        }
    }
}

impl Metrics {
    /// The handles of one function.
    pub fn function(&self, name: &str) -> FunctionMetrics {
        let labels = FunctionLabels {
            function: name.into(),
        };
        // `get_or_create` hands back a read guard of the family: take each handle in its own
        // statement, or a second call on the same family deadlocks on the first one's guard.
        let kill = |limit| {
            let labels = KillLabels {
                function: labels.function.clone(),
                limit,
            };
            self.kills.get_or_create(&labels).clone()
        };
        let time_kills = kill("time");
        let memory_kills = kill("memory");
        let duration = self.duration.get_or_create(&labels).clone();
        let instantiate = self.instantiate.get_or_create(&labels).clone();
        let traps = self.traps.get_or_create(&labels).clone();
        let in_use = self.in_use.get_or_create(&labels).clone();
        FunctionMetrics {
            name: labels.function,
            duration,
            instantiate,
            traps,
            time_kills,
            memory_kills,
            in_use,
            ok: Arc::default(),
        }
    }

    /// Sets the cache gauges (at scrape time).
    pub fn set_cache(&self, bytes: u64, entries: u64) {
        self.cache_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        self.cache_entries
            .set(i64::try_from(entries).unwrap_or(i64::MAX));
    }

    /// Counts one answered request.
    pub fn request(&self, function: &Arc<str>, status: u16, version: &'static str) {
        self.requests
            .get_or_create(&RequestLabels {
                function: function.clone(),
                status,
                version,
            })
            .inc();
    }

    /// Counts one answered request of `function`: a 200's counter is looked up once per
    /// function and HTTP version, then kept with the function's handles.
    pub fn function_request(&self, function: &FunctionMetrics, status: u16, version: &'static str) {
        let slot = match (status, version) {
            (200, "HTTP/1.1") => 0,
            (200, "HTTP/2") => 1,
            (200, "HTTP/3") => 2,
            _ => return self.request(&function.name, status, version),
        };
        function.ok[slot]
            .get_or_init(|| {
                self.requests
                    .get_or_create(&RequestLabels {
                        function: function.name.clone(),
                        status,
                        version,
                    })
                    .clone()
            })
            .inc();
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Metric handles of one function.
#[derive(Clone, Debug)]
pub struct FunctionMetrics {
    /// The function's name, as labelled.
    pub name: Arc<str>,
    /// Request duration, seconds.
    pub duration: Histogram,
    /// Instantiation time, seconds.
    pub instantiate: Histogram,
    /// Guest traps.
    pub traps: Counter,
    /// Time-limit kills.
    pub time_kills: Counter,
    /// Memory-limit kills.
    pub memory_kills: Counter,
    /// Instances running now.
    pub in_use: Gauge,
    /// `edge_requests_total` for status 200 over HTTP/1.1, HTTP/2 and HTTP/3, once used.
    ok: Arc<[std::sync::OnceLock<Counter>; 3]>,
}
