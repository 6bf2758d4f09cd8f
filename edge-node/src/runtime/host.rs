//! The per-request store data, and the ONE place that implements wasmtime's `WasiView` and
//! `WasiHttpView` (their shape changes between wasmtime majors; keep that churn here).
//!
//! Everything a guest may do is decided here, and denied unless granted: no preopened
//! directories, no sockets; the environment and `wasi:config/store` are the function's
//! configuration values; outbound HTTP only to the destinations its [`Grants`] name. Its stdout and stderr become log lines
//! that carry the request id.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, StoreContextMut, UpdateDeadline};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_config::{WasiConfig, WasiConfigVariables};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks, WasiHttpView};

use super::Grants;
use super::keyvalue::KvView;
use super::outbound::{Client, Policy};
use crate::kv::Kv;

/// Longest guest output line kept whole; longer ones are cut into pieces of this size.
const MAX_LOG_LINE: usize = 16 * 1024;
/// Guest output kept per request per stream; the rest is dropped with one warning.
const MAX_LOG_BYTES_PER_REQUEST: usize = 1 << 20;

/// Who a request's guest output belongs to.
#[derive(Debug, Clone)]
pub(crate) struct RequestLabel {
    pub(crate) function: Arc<str>,
    pub(crate) request_id: Arc<str>,
}

/// State of one store, created for one request and dropped with it.
pub(crate) struct Host {
    table: ResourceTable,
    wasi: WasiCtx,
    http: WasiHttpCtx,
    config: Arc<WasiConfigVariables>,
    kv: Arc<Kv>,
    kv_namespaces: Arc<[Arc<str>]>,
    label: RequestLabel,
    outbound: Outbound,
    pub(crate) limits: GuestLimits,
    deadline: Instant,
    /// Set when the epoch callback killed the guest for running past its deadline.
    pub(crate) timed_out: bool,
    /// Set when the request body went past the function's limit.
    pub(crate) body_too_large: Arc<AtomicBool>,
}

/// What a function's instances may use: its grants, and the node's services behind them.
pub(crate) struct Capabilities<'a> {
    pub(crate) grants: &'a Grants,
    /// The configuration values as `wasi:config/store` serves them.
    pub(crate) config: Arc<WasiConfigVariables>,
    /// The node's outbound client.
    pub(crate) client: &'a Client,
    /// The node's KV replica, and the namespaces the function may open.
    pub(crate) kv: Arc<Kv>,
    pub(crate) kv_namespaces: Arc<[Arc<str>]>,
}

impl Host {
    pub(crate) fn new(
        label: &RequestLabel,
        Capabilities {
            grants,
            config,
            client,
            kv,
            kv_namespaces,
        }: Capabilities<'_>,
        memory_limit: u64,
        deadline: Instant,
        body_too_large: Arc<AtomicBool>,
    ) -> Self {
        let mut wasi = WasiCtxBuilder::new();
        wasi.stdout(GuestOutput::new(label.clone(), "stdout"))
            .stderr(GuestOutput::new(label.clone(), "stderr"))
            // Sockets are linked so that toolchains importing them load, but every use fails.
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .envs(&grants.env);
        Self {
            table: ResourceTable::new(),
            wasi: wasi.build(),
            http: WasiHttpCtx::new(),
            config,
            kv,
            kv_namespaces,
            label: label.clone(),
            outbound: Outbound {
                policy: grants.outbound.clone(),
                client: client.clone(),
                label: label.clone(),
            },
            limits: GuestLimits {
                memory_bytes: usize::try_from(memory_limit).unwrap_or(usize::MAX),
                memory_exceeded: false,
            },
            deadline,
            timed_out: false,
            body_too_large,
        }
    }

    /// Called by wasmtime each epoch tick while the guest runs: past the deadline the guest is
    /// killed, otherwise it yields so that one busy guest cannot hold a worker thread.
    pub(crate) fn on_epoch(mut ctx: StoreContextMut<'_, Self>) -> wasmtime::Result<UpdateDeadline> {
        let host = ctx.data_mut();
        if Instant::now() >= host.deadline {
            host.timed_out = true;
            return Err(wasmtime::format_err!(
                "the function ran past its time limit"
            ));
        }
        Ok(UpdateDeadline::Yield(1))
    }

    /// The function's configuration values, for `wasi:config/store`.
    pub(crate) fn config(&mut self) -> WasiConfig<'_> {
        WasiConfig::from(&*self.config)
    }

    /// The function's KV namespaces, for `wasi:keyvalue`.
    pub(crate) fn kv(&mut self) -> KvView<'_> {
        KvView {
            table: &mut self.table,
            kv: &self.kv,
            namespaces: &self.kv_namespaces,
            label: &self.label,
        }
    }

    pub(crate) fn body_too_large(&self) -> bool {
        self.body_too_large.load(Ordering::Relaxed)
    }
}

impl WasiView for Host {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for Host {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            hooks: &mut self.outbound,
            table: &mut self.table,
            ctx: &mut self.http,
        }
    }
}

/// Outbound HTTP: a request to a destination the function's policy names goes out through
/// the node's pooled client (and cache); any other is denied, and the guest sees
/// `HttpRequestDenied`.
struct Outbound {
    policy: Policy,
    client: Client,
    label: RequestLabel,
}

impl WasiHttpHooks for Outbound {
    fn send_request(
        &mut self,
        request: http::Request<wasmtime_wasi_http::WasiBody>,
        options: Option<wasmtime_wasi_http::RequestOptions>,
        _fut: Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
    ) -> Box<
        dyn Future<
                Output = wasmtime_wasi_http::Result<(
                    http::Response<wasmtime_wasi_http::WasiBody>,
                    Box<dyn Future<Output = wasmtime_wasi_http::Result<()>> + Send>,
                )>,
            > + Send,
    > {
        if !self.policy.allows(request.uri()) {
            let uri = request.uri();
            tracing::warn!(
                function = %self.label.function,
                request_id = %self.label.request_id,
                uri = %uri,
                "outbound request denied: the function's outbound list does not name {}://{}; deploy it with --allow-outbound {}://{} (or `outbound` in the routes file)",
                uri.scheme_str().unwrap_or("?"),
                uri.authority().map_or("?", |a| a.as_str()),
                uri.scheme_str().unwrap_or("https"),
                uri.authority().map_or("HOST", |a| a.as_str()),
            );
            return Box::new(async { Err(wasmtime_wasi_http::Error::HttpRequestDenied) });
        }
        let client = self.client.clone();
        let label = self.label.clone();
        Box::new(async move {
            let response = client
                .send(label.function, &label.request_id, request, options)
                .await?;
            Ok((
                response,
                Box::new(async { Ok(()) }) as Box<dyn Future<Output = _> + Send>,
            ))
        })
    }
}

/// Memory limit of one instance. Growth past it fails (the guest sees `memory.grow` return -1,
/// as it would on a full machine) and is remembered so the failure is reported as a limit kill.
pub(crate) struct GuestLimits {
    memory_bytes: usize,
    pub(crate) memory_exceeded: bool,
}

impl ResourceLimiter for GuestLimits {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes {
            self.memory_exceeded = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        _desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Tables are bounded by the pool's slot size already.
        Ok(true)
    }
}

/// A guest's stdout or stderr: each line becomes a log event with the request id.
#[derive(Clone)]
struct GuestOutput {
    label: RequestLabel,
    stream: &'static str,
}

impl GuestOutput {
    fn new(label: RequestLabel, stream: &'static str) -> Self {
        Self { label, stream }
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(LineLogger::new(self.clone()))
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(LineLogger::new(self.clone()))
    }
}

/// Splits guest output into lines and logs each; what is left when the stream closes is logged
/// too, so nothing the guest wrote is lost up to the per-request cap.
struct LineLogger {
    out: GuestOutput,
    pending: Vec<u8>,
    logged: usize,
    capped: bool,
}

impl LineLogger {
    fn new(out: GuestOutput) -> Self {
        Self {
            out,
            pending: Vec::new(),
            logged: 0,
            capped: false,
        }
    }

    fn push(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.logged >= MAX_LOG_BYTES_PER_REQUEST {
                if !self.capped {
                    self.capped = true;
                    tracing::warn!(
                        target: "edge_node::guest",
                        request_id = %self.out.label.request_id,
                        function = %self.out.label.function,
                        stream = self.out.stream,
                        "guest output past {MAX_LOG_BYTES_PER_REQUEST} bytes for one request; dropping the rest",
                    );
                }
                return;
            }
            match bytes.iter().position(|&b| b == b'\n') {
                Some(end) => {
                    self.pending.extend_from_slice(&bytes[..end]);
                    self.emit();
                    bytes = &bytes[end + 1..];
                }
                None => {
                    self.pending.extend_from_slice(bytes);
                    bytes = &[];
                }
            }
            while self.pending.len() >= MAX_LOG_LINE {
                let rest = self.pending.split_off(MAX_LOG_LINE);
                self.emit();
                self.pending = rest;
            }
        }
    }

    fn emit(&mut self) {
        let line = String::from_utf8_lossy(&self.pending);
        let line = line.strip_suffix('\r').unwrap_or(&line);
        self.logged += line.len() + 1;
        tracing::info!(
            target: "edge_node::guest",
            request_id = %self.out.label.request_id,
            function = %self.out.label.function,
            stream = self.out.stream,
            "{line}"
        );
        self.pending.clear();
    }
}

impl Drop for LineLogger {
    fn drop(&mut self) {
        if !self.pending.is_empty() && self.logged < MAX_LOG_BYTES_PER_REQUEST {
            self.emit();
        }
    }
}

#[async_trait::async_trait]
impl Pollable for LineLogger {
    async fn ready(&mut self) {}
}

impl OutputStream for LineLogger {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(64 * 1024)
    }
}

impl tokio::io::AsyncWrite for LineLogger {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.get_mut().push(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
