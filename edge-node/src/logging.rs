//! A log sink for the hot path: request threads append formatted lines to a shared buffer,
//! and a flusher thread writes the buffer to stderr every [`FLUSH_INTERVAL`], or at once when
//! it passes [`FLUSH_BYTES`].
//!
//! Writing each line with its own syscall, or handing each line to a writer thread (which
//! then has to be woken), costs more per request than serving a cached response; batching
//! costs one short lock per line. Lines keep their order; at most one interval of lines is
//! lost if the process is killed with SIGKILL. [`LogGuard`] flushes what is left on drop.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// How long a line may wait in the buffer.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(20);
/// A buffer this full is written out by the thread that filled it.
pub const FLUSH_BYTES: usize = 64 << 10;

struct Shared {
    buffer: Mutex<Vec<u8>>,
    stopping: Mutex<bool>,
    wake: Condvar,
}

impl Shared {
    fn flush(&self) {
        // Swap under the lock, write outside it, so appenders never wait on stderr.
        let full = {
            let mut buffer = self.buffer.lock().unwrap_or_else(|e| e.into_inner());
            if buffer.is_empty() {
                return;
            }
            std::mem::replace(&mut *buffer, Vec::with_capacity(FLUSH_BYTES))
        };
        let mut stderr = std::io::stderr().lock();
        let _ = stderr.write_all(&full);
        let _ = stderr.flush();
    }
}

/// The sink; give it to `tracing_subscriber::fmt().with_writer(..)`.
#[derive(Clone)]
pub struct BatchedStderr {
    shared: Arc<Shared>,
}

/// Flushes the sink and stops its thread when dropped: hold it until the process ends.
pub struct LogGuard {
    shared: Arc<Shared>,
    flusher: Option<std::thread::JoinHandle<()>>,
}

impl BatchedStderr {
    /// The sink and the guard of its flusher thread.
    ///
    /// # Panics
    /// If the flusher thread cannot be spawned.
    pub fn new() -> (Self, LogGuard) {
        let shared = Arc::new(Shared {
            buffer: Mutex::new(Vec::with_capacity(FLUSH_BYTES)),
            stopping: Mutex::new(false),
            wake: Condvar::new(),
        });
        let flusher = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("log-flusher".into())
                .spawn(move || {
                    let mut stopping = shared.stopping.lock().unwrap_or_else(|e| e.into_inner());
                    while !*stopping {
                        stopping = shared
                            .wake
                            .wait_timeout(stopping, FLUSH_INTERVAL)
                            .unwrap_or_else(|e| e.into_inner())
                            .0;
                        shared.flush();
                    }
                })
                .expect("spawning the log flusher thread")
        };
        (
            Self {
                shared: shared.clone(),
            },
            LogGuard {
                shared,
                flusher: Some(flusher),
            },
        )
    }
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        *self
            .shared
            .stopping
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = true;
        self.shared.wake.notify_one();
        if let Some(flusher) = self.flusher.take() {
            let _ = flusher.join();
        }
        self.shared.flush();
    }
}

impl BatchedStderr {
    /// Appends `bytes` to the buffer; the thread that fills it past [`FLUSH_BYTES`] writes it.
    fn append(&self, bytes: &[u8]) {
        let full = {
            let mut buffer = self.shared.buffer.lock().unwrap_or_else(|e| e.into_inner());
            buffer.extend_from_slice(bytes);
            buffer.len() >= FLUSH_BYTES
        };
        if full {
            self.shared.flush();
        }
    }
}

impl Write for &BatchedStderr {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.append(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for BatchedStderr {
    type Writer = &'a BatchedStderr;

    fn make_writer(&'a self) -> Self::Writer {
        self
    }
}

/// Where access-log lines go when the binary installed a sink, and in which format.
static ACCESS_SINK: std::sync::OnceLock<(BatchedStderr, bool)> = std::sync::OnceLock::new();

/// Sends access-log lines straight to `sink`, as JSON (`json`) or as a compact line for people,
/// instead of through tracing's formatter: the access log is the one line every request
/// writes, and a dedicated encoder is several times cheaper. The `--log` filter still decides
/// whether it is written (target `edge_node::access`).
pub fn route_access_log(sink: BatchedStderr, json: bool) {
    let _ = ACCESS_SINK.set((sink, json));
}

/// One request's access-log record.
pub(crate) struct AccessRecord<'a> {
    pub(crate) request_id: &'a str,
    pub(crate) method: &'a str,
    pub(crate) host: &'a str,
    pub(crate) path: &'a str,
    pub(crate) version: &'static str,
    pub(crate) status: u16,
    pub(crate) function: &'a str,
    pub(crate) duration_us: u64,
    pub(crate) instantiate_us: Option<u64>,
    pub(crate) bytes: u64,
    pub(crate) complete: bool,
    /// The client's address, as text.
    pub(crate) remote: &'a str,
}

impl AccessRecord<'_> {
    /// Writes the record to the installed sink, or as a tracing event when there is none.
    pub(crate) fn emit(&self) {
        let Some((sink, json)) = ACCESS_SINK.get() else {
            tracing::info!(
                target: "edge_node::access",
                request_id = self.request_id,
                method = self.method,
                host = self.host,
                path = self.path,
                version = self.version,
                status = self.status,
                function = self.function,
                duration_us = self.duration_us,
                instantiate_us = self.instantiate_us,
                bytes = self.bytes,
                complete = self.complete,
                remote = %self.remote,
            );
            return;
        };
        let mut line = Vec::with_capacity(384);
        if *json {
            self.write_json(&mut line);
        } else {
            self.write_pretty(&mut line);
        }
        sink.append(&line);
    }

    fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(br#"{"timestamp":""#);
        timestamp(out);
        out.extend_from_slice(br#"","level":"INFO","request_id":"#);
        plain_str(out, self.request_id);
        out.extend_from_slice(br#","method":"#);
        plain_str(out, self.method);
        out.extend_from_slice(br#","host":"#);
        json_str(out, self.host);
        out.extend_from_slice(br#","path":"#);
        json_str(out, self.path);
        out.extend_from_slice(br#","version":""#);
        out.extend_from_slice(self.version.as_bytes());
        out.extend_from_slice(br#"","status":"#);
        number(out, self.status);
        out.extend_from_slice(br#","function":"#);
        plain_str(out, self.function);
        out.extend_from_slice(br#","duration_us":"#);
        number(out, self.duration_us);
        if let Some(us) = self.instantiate_us {
            out.extend_from_slice(br#","instantiate_us":"#);
            number(out, us);
        }
        out.extend_from_slice(br#","bytes":"#);
        number(out, self.bytes);
        out.extend_from_slice(if self.complete {
            br#","complete":true,"remote":"#
        } else {
            br#","complete":false,"remote":"#
        });
        plain_str(out, self.remote);
        out.extend_from_slice(b",\"target\":\"edge_node::access\"}\n");
    }

    fn write_pretty(&self, out: &mut Vec<u8>) {
        timestamp(out);
        let _ = write!(
            out,
            "  INFO edge_node::access: {} {}{} {} {} function={} duration_us={}",
            self.method,
            self.host,
            self.path.escape_debug(),
            self.version,
            self.status,
            self.function,
            self.duration_us
        );
        if let Some(us) = self.instantiate_us {
            let _ = write!(out, " instantiate_us={us}");
        }
        let _ = writeln!(
            out,
            " bytes={} complete={} remote={} request_id={}",
            self.bytes, self.complete, self.remote, self.request_id
        );
    }
}

/// `value` as a JSON string, quotes included.
fn json_str(out: &mut Vec<u8>, value: &str) {
    if value
        .bytes()
        .all(|b| b >= 0x20 && b != b'"' && b != b'\\' && b != 0x7f)
    {
        // Nothing to escape: the usual case (ids, methods, hosts, most paths).
        out.push(b'"');
        out.extend_from_slice(value.as_bytes());
        out.push(b'"');
    } else {
        // serde_json's escaper: correct for every control character and quote.
        let _ = serde_json::to_writer(&mut *out, value);
    }
}

/// `value` as a JSON string, for values that never need escaping: request ids (token
/// characters), methods (tokens), function names (`a-z0-9-`) and socket addresses; checked in
/// debug builds.
fn plain_str(out: &mut Vec<u8>, value: &str) {
    debug_assert!(
        !value
            .bytes()
            .any(|b| b < 0x20 || b == b'"' || b == b'\\' || b == 0x7f),
        "{value:?} needs escaping"
    );
    out.push(b'"');
    out.extend_from_slice(value.as_bytes());
    out.push(b'"');
}

/// `n` in decimal.
fn number(out: &mut Vec<u8>, n: impl itoa::Integer) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// Now as RFC 3339 with microseconds (`2026-11-24T03:31:41.313678Z`), the format tracing's
/// JSON lines use. The date and time up to the second are formatted once per second (per
/// thread); only the microseconds are written per line.
fn timestamp(out: &mut Vec<u8>) {
    use std::cell::RefCell;
    use std::time::{SystemTime, UNIX_EPOCH};
    thread_local! {
        static SECOND: RefCell<(u64, [u8; 20])> = const { RefCell::new((u64::MAX, [0; 20])) };
    }
    let now = SystemTime::now();
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let (secs, micros) = (since.as_secs(), since.subsec_micros());
    SECOND.with_borrow_mut(|(second, prefix)| {
        if *second != secs {
            // `YYYY-MM-DDTHH:MM:SSZ`: keep all but the `Z`, then a point.
            let whole = humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs))
                .to_string();
            prefix[..19].copy_from_slice(&whole.as_bytes()[..19]);
            prefix[19] = b'.';
            *second = secs;
        }
        out.extend_from_slice(&prefix[..]);
    });
    let mut digits = *b"000000";
    let mut buffer = itoa::Buffer::new();
    let formatted = buffer.format(micros).as_bytes();
    digits[6 - formatted.len()..].copy_from_slice(formatted);
    out.extend_from_slice(&digits);
    out.push(b'Z');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_json_is_valid_and_escaped() {
        let record = AccessRecord {
            request_id: "abc",
            method: "GET",
            host: "h\"ost",
            path: "/a\\b\n",
            version: "HTTP/1.1",
            status: 200,
            function: "f",
            duration_us: 12,
            instantiate_us: Some(3),
            bytes: 20,
            complete: true,
            remote: "127.0.0.1:9",
        };
        let mut line = Vec::new();
        record.write_json(&mut line);
        assert_eq!(line.last(), Some(&b'\n'));
        let value: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(value["host"], "h\"ost");
        assert_eq!(value["path"], "/a\\b\n");
        assert_eq!(value["status"], 200);
        assert_eq!(value["instantiate_us"], 3);
        assert_eq!(value["target"], "edge_node::access");
        assert_eq!(value["remote"], "127.0.0.1:9");
        assert_eq!(value["complete"], true);
        let stamp = value["timestamp"].as_str().unwrap();
        let parsed = humantime::parse_rfc3339(stamp).unwrap();
        let off = std::time::SystemTime::now()
            .duration_since(parsed)
            .unwrap_or_default();
        assert!(off < Duration::from_secs(60), "{stamp}");
        assert_eq!(stamp.len(), "2026-11-24T03:31:41.313678Z".len(), "{stamp}");
        let mut pretty = Vec::new();
        record.write_pretty(&mut pretty);
        assert!(
            String::from_utf8(pretty)
                .unwrap()
                .contains("GET h\"ost/a\\\\b\\n HTTP/1.1 200")
        );
    }

    #[test]
    fn plain_strings_and_small_microseconds_are_written_as_json() {
        for value in ["", "/plain/path?q=1", "caf\u{e9}", "tab\there", "del\u{7f}"] {
            let mut out = Vec::new();
            json_str(&mut out, value);
            let back: String = serde_json::from_slice(&out).unwrap();
            assert_eq!(back, value);
        }
        // Two lines in the same second share the cached prefix and stay well-formed.
        for _ in 0..2 {
            let mut out = Vec::new();
            timestamp(&mut out);
            let text = String::from_utf8(out).unwrap();
            humantime::parse_rfc3339(&text).unwrap();
        }
    }
}
