//! meshwasm telemetry filter: Istio's standard metrics with Istio's
//! labels, the HTTP peer metadata exchange, access logs (to Envoy's log or
//! an OpenTelemetry collector) and trace context, from an Istio Telemetry
//! `spec`, in any Envoy.
//!
//! As an HTTP filter, each request's header map is read once, when it
//! arrives: the peer's metadata is taken and removed (inbound) or this
//! workload's is added (outbound), and trace headers are added where
//! missing. When the request is over (`on_log`), its properties give the
//! labels and measures, and `meshwasm_core::telemetry::TelemetryPlan`
//! says which series to update. With `"meshwasm": {"filter": "network"}`
//! the same module is a network filter and reports Istio's TCP metrics.
//!
//! Metrics: Istio's `istio_*` families, and
//! `meshwasm.telemetry.{series_overflow,peer_metadata_invalid}`,
//! `meshwasm.telemetry.access_log.{dropped,exported,export_failed}`.

mod attrs;
mod connection;
mod export;

use attrs::{Attrs, Kept, keep};
use meshwasm_core::metrics::MetricRef;
use meshwasm_core::properties::{Attribute, PropertyValue, attributes};
use meshwasm_core::telemetry::access_log::Entry;
use meshwasm_core::telemetry::grpc::MessageCounter;
use meshwasm_core::telemetry::labels::{Facts, Protocol, Reporter, Service};
use meshwasm_core::telemetry::peer::{self, Exchange, PeerCache};
use meshwasm_core::telemetry::trace::{Arrived, headers_to_add};
use meshwasm_core::telemetry::workload::Workload;
use meshwasm_core::telemetry::{Change, HttpMeasures, SeriesCache, TelemetryPlan, metric, otlp};
use meshwasm_plugin::headers::{HeaderMapKind, HostRequest, header_map};
use meshwasm_plugin::host::{HostProperties, now_nanos, set_tick};
use meshwasm_plugin::{Filter, Log, Metrics, Plugin, Setup};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, StreamContext};
use proxy_wasm::types::{Action, BufferType, LogLevel};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

/// The filter keeps no VM state beyond its configuration.
#[derive(Default)]
pub struct Telemetry;

/// The most clusters whose service is remembered.
const MAX_CLUSTERS: usize = 256;
/// The most distinct facts whose series ids are remembered.
const SERIES_KEYS: usize = 4096;

/// The configuration in force, and what it caches per VM.
pub struct Configured {
    plan: TelemetryPlan,
    metrics: Metrics,
    local: Workload,
    /// This workload's exchange headers, encoded once.
    exchange: Exchange,
    peers: RefCell<PeerCache>,
    /// The service of each cluster seen, by name.
    services: RefCell<HashMap<String, Option<Rc<Service>>>>,
    /// The host ids of the series of the facts seen so far.
    series: RefCell<SeriesCache>,
    export: Option<export::Exporter>,
}

impl Filter for Telemetry {
    const NAME: &'static str = "meshwasm telemetry";
    type Plan = TelemetryPlan;
    type Config = Configured;
    type Stream = TelemetryStream;

    fn configure(plugin: &Plugin<Self>, plan: TelemetryPlan, setup: Setup<'_>) -> Configured {
        let local = Workload::from_node(&mut HostProperties);
        let node_id = attributes::NODE_ID
            .read(&mut HostProperties)
            .unwrap_or_default();
        if local.workload.is_empty() && local.namespace.is_empty() {
            plugin.log().line(
                LogLevel::Info,
                "the node metadata names no workload (WORKLOAD_NAME, NAMESPACE, LABELS): local labels are unknown",
            );
        }
        let export = plan.otlp().map(|o| export::Exporter::new(o, &local));
        set_tick(Self::NAME, plan.otlp().map(|o| o.flush_interval));
        Configured {
            exchange: Exchange::new(&local, &node_id),
            peers: RefCell::new(PeerCache::new(plan.peer_cache_size())),
            services: RefCell::new(HashMap::new()),
            series: RefCell::new(SeriesCache::new(SERIES_KEYS)),
            metrics: setup.metrics,
            local,
            export,
            plan,
        }
    }

    fn stream(plugin: &Rc<Plugin<Self>>, config: Rc<Configured>, _id: u32) -> TelemetryStream {
        TelemetryStream {
            plugin: Rc::clone(plugin),
            config,
            reporter: Reporter::Destination,
            request: Kept::default(),
            response: Kept::default(),
            peer: None,
            peer_sent: false,
            grpc: false,
            request_messages: MessageCounter::default(),
            response_messages: MessageCounter::default(),
            started_nanos: 0,
            header_bytes: (0, 0),
            body_bytes: (0, 0),
            response_code: None,
        }
    }

    fn is_network(config: &Configured) -> bool {
        config.plan.network()
    }

    fn connection(
        _plugin: &Rc<Plugin<Self>>,
        config: Rc<Configured>,
        _id: u32,
    ) -> Option<Box<dyn StreamContext>> {
        Some(Box::new(connection::TcpStream::new(config)))
    }

    fn on_tick(plugin: &Plugin<Self>) {
        if let Some(config) = plugin.config()
            && let Some(export) = &config.export
        {
            export.flush(&config.metrics, plugin.log());
        }
    }

    fn on_root_http_call_response(plugin: &Plugin<Self>, token: u32, headers: usize, _: usize) {
        if let Some(config) = plugin.config()
            && let Some(export) = &config.export
        {
            export.answered(&config.metrics, token, headers);
        }
    }
}

impl Configured {
    /// Carries out the changes of one report on the host, with the
    /// series ids core's cache gives.
    fn record(&self, facts: &Facts<'_>, changes: &[(MetricRef, Change)], attrs: &mut Attrs<'_>) {
        let Ok(mut cache) = self.series.try_borrow_mut() else {
            return;
        };
        let updates = cache.updates(&self.plan, facts, changes, attrs, |metric, labels| {
            self.metrics.resolve(metric, labels)
        });
        for (id, change, overflow) in updates {
            if overflow {
                self.metrics.add(metric::SERIES_OVERFLOW, 1);
            }
            match (id, change) {
                (Some(id), Change::Add(n)) => self.metrics.add_id(id, n),
                (Some(id), Change::Record(v)) => self.metrics.record_id(id, v),
                (None, _) => {}
            }
        }
    }

    /// The service of the request's cluster: Istio's cluster metadata,
    /// Istio's named clusters, else the request's host.
    fn service(&self, cluster: Option<&str>, authority: Option<&str>) -> Option<Rc<Service>> {
        if let Some(cluster) = cluster
            && let Ok(mut services) = self.services.try_borrow_mut()
        {
            if let Some(known) = services.get(cluster) {
                if let Some(service) = known {
                    return Some(Rc::clone(service));
                }
            } else {
                let found = Service::from_cluster_name(cluster)
                    .or_else(|| {
                        let bytes = read::<Vec<u8>>(&["xds", "cluster_metadata"])?;
                        Service::from_cluster_metadata(&bytes).ok().flatten()
                    })
                    .map(Rc::new);
                if services.len() < MAX_CLUSTERS {
                    services.insert(cluster.to_owned(), found.clone());
                }
                if found.is_some() {
                    return found;
                }
            }
        }
        authority.map(|a| Rc::new(self.plan.service_from_authority(a)))
    }
}

/// The reporter of the listener the stream came in on.
fn reporter(plan: &TelemetryPlan) -> Reporter {
    plan.reporter(
        plan.needs_direction()
            .then(|| attributes::LISTENER_DIRECTION.read(&mut HostProperties))
            .flatten(),
    )
}

/// Whether the downstream connection is mutual TLS, and the local and peer
/// certificates' SPIFFE ids, as the destination reports them; the source
/// side reports none. Read for every inbound stream: `:scheme` does not
/// tell, since Envoy 1.40 keeps `http` on a TLS connection (tests/e2e/mtls.rs).
fn security(reporter: Reporter) -> (bool, Option<String>, Option<String>) {
    let mtls = reporter == Reporter::Destination
        && attributes::CONNECTION_MTLS
            .read(&mut HostProperties)
            .unwrap_or(false);
    if !mtls {
        return (false, None, None);
    }
    (
        true,
        read::<String>(&["connection", "uri_san_local_certificate"]),
        attributes::URI_SAN_PEER_CERTIFICATE.read(&mut HostProperties),
    )
}

/// A property, read with a host call that cannot trap.
fn read<T: PropertyValue>(path: &'static [&'static str]) -> Option<T> {
    Attribute::<T>::new(path).read(&mut HostProperties)
}

/// One HTTP request.
pub struct TelemetryStream {
    plugin: Rc<Plugin<Telemetry>>,
    config: Rc<Configured>,
    reporter: Reporter,
    /// The request headers the plan reads.
    request: Kept,
    /// The response headers the plan reads.
    response: Kept,
    /// The other side's workload, if it sent its metadata.
    peer: Option<Rc<Workload>>,
    /// The client sent its metadata, so the server answers with its own.
    peer_sent: bool,
    grpc: bool,
    request_messages: MessageCounter,
    response_messages: MessageCounter,
    /// When the request's headers arrived, by the host clock.
    started_nanos: u64,
    /// Header bytes received and sent, as the maps' byte size counts them
    /// after the filter's own edits: with the body bytes, Envoy's
    /// `request.total_size` and `response.total_size`, counted as they
    /// pass instead of read back.
    header_bytes: (u64, u64),
    /// Body bytes received and sent (Envoy's `%BYTES_RECEIVED%`, `%BYTES_SENT%`).
    body_bytes: (u64, u64),
    /// The response's `:status`, once its headers passed.
    response_code: Option<i64>,
}

impl TelemetryStream {
    fn log(&self) -> Log {
        self.plugin.log()
    }

    /// Takes the peer's exchange headers out of a map, reading the peer;
    /// the bytes the map lost.
    fn take_peer(&mut self, kind: HeaderMapKind, metadata: Option<&str>, id: Option<&str>) -> u64 {
        let Some(metadata) = metadata else {
            return 0;
        };
        let removed = [
            (peer::METADATA_HEADER, Some(metadata)),
            (peer::ID_HEADER, id),
        ]
        .iter()
        .filter_map(|(name, value)| value.map(|v| (name.len() + v.len()) as u64))
        .sum();
        let config = &self.config;
        let peer = config
            .peers
            .try_borrow_mut()
            .ok()
            .and_then(|mut cache| cache.peer(id, metadata));
        if peer.is_none() {
            config.metrics.add(metric::PEER_INVALID, 1);
        }
        self.peer = peer;
        for name in [peer::METADATA_HEADER, peer::ID_HEADER] {
            let _ = hostcalls::set_map_value_bytes(kind, name, None);
        }
        removed
    }

    /// Adds this workload's exchange headers to a map; the bytes it gained.
    fn send_own(&self, kind: HeaderMapKind) -> u64 {
        let exchange = &self.config.exchange;
        let mut added = 0;
        for (name, value) in [
            (peer::METADATA_HEADER, exchange.metadata()),
            (peer::ID_HEADER, exchange.id()),
        ] {
            match hostcalls::set_map_value_bytes(kind, name, Some(value.as_bytes())) {
                Ok(()) => added += (name.len() + value.len()) as u64,
                Err(status) => self
                    .log()
                    .line(LogLevel::Warn, &format!("adding {name}: {status:?}")),
            }
        }
        added
    }

    fn count_body(&mut self, body: BufferType, size: usize) {
        let (bytes, messages) = match body {
            BufferType::HttpRequestBody => (&mut self.body_bytes.0, &mut self.request_messages),
            _ => (&mut self.body_bytes.1, &mut self.response_messages),
        };
        *bytes += size as u64;
        if !self.grpc || size == 0 {
            return;
        }
        if let Ok(Some(chunk)) = hostcalls::get_buffer(body, 0, size) {
            messages.feed(&chunk);
        }
    }

    /// The access log entry of the request: what the filter measured or
    /// read already, and the properties it has no other source for.
    fn entry(&self, facts: &Facts<'_>, cluster: Option<&str>, duration_ms: u64) -> Entry {
        let text = |path: &'static [&'static str]| read::<String>(path).filter(|s| !s.is_empty());
        let header = |name: &str| self.request.get(name).map(str::to_owned);
        let signed = |n: u64| i64::try_from(n).ok();
        Entry {
            start_time_nanos: signed(self.started_nanos),
            method: header(":method"),
            path: header("x-envoy-original-path").or_else(|| header(":path")),
            protocol: text(&["request", "protocol"]),
            response_code: facts.response_code,
            response_flags: facts.flags,
            response_code_details: text(&["response", "code_details"]),
            connection_termination_details: text(&["connection", "termination_details"]),
            upstream_transport_failure_reason: text(&["upstream", "transport_failure_reason"]),
            bytes_received: signed(self.body_bytes.0),
            bytes_sent: signed(self.body_bytes.1),
            duration_ms: signed(duration_ms),
            upstream_service_time: self
                .response
                .get("x-envoy-upstream-service-time")
                .map(str::to_owned),
            x_forwarded_for: header("x-forwarded-for"),
            user_agent: header("user-agent"),
            request_id: header("x-request-id"),
            authority: header(":authority"),
            upstream_host: text(&["upstream", "address"]),
            upstream_cluster: cluster.map(str::to_owned),
            upstream_local_address: text(&["upstream", "local_address"]),
            downstream_local_address: text(&["destination", "address"]),
            downstream_remote_address: text(&["source", "address"]),
            requested_server_name: text(&["connection", "requested_server_name"]),
            route_name: text(&["xds", "route_name"]),
            extra: Vec::new(),
        }
    }
}

impl Context for TelemetryStream {}

impl TelemetryStream {
    /// Takes what the request's labels need from the headers seen through
    /// `req`, exchanges peer metadata and adds trace headers. Its own
    /// header edits are made directly: stages after it see the request
    /// as it arrived.
    pub fn request_headers(&mut self, req: &mut HostRequest) {
        let config = Rc::clone(&self.config);
        let plan = &config.plan;
        self.reporter = reporter(plan);
        let map = req.headers();
        self.started_nanos = now_nanos();
        self.request = keep(map, &plan.needs().request_headers);
        self.header_bytes.0 = map.byte_size() as u64;
        self.grpc = Protocol::of_request(self.request.get("content-type")) == Protocol::Grpc;
        if plan.peer_exchange() {
            match self.reporter {
                Reporter::Destination => {
                    let metadata = self.request.get(peer::METADATA_HEADER).map(str::to_owned);
                    let id = self.request.get(peer::ID_HEADER).map(str::to_owned);
                    self.peer_sent = metadata.is_some();
                    let removed = self.take_peer(
                        HeaderMapKind::HttpRequestHeaders,
                        metadata.as_deref(),
                        id.as_deref(),
                    );
                    self.header_bytes.0 = self.header_bytes.0.saturating_sub(removed);
                }
                Reporter::Source => {
                    self.header_bytes.0 += self.send_own(HeaderMapKind::HttpRequestHeaders);
                }
            }
        }
        if let Some(sampling) = plan.trace_sampling() {
            let arrived = Arrived {
                request_id: self.request.get("x-request-id").is_some(),
                traceparent: self.request.get("traceparent").is_some(),
                b3: self.request.get("x-b3-traceid").is_some() || self.request.get("b3").is_some(),
            };
            let added = headers_to_add(arrived, &mut self.plugin.rng(), sampling);
            for (name, value) in added {
                if let Err(status) = hostcalls::set_map_value_bytes(
                    HeaderMapKind::HttpRequestHeaders,
                    name,
                    Some(value.as_bytes()),
                ) {
                    self.log()
                        .line(LogLevel::Warn, &format!("adding {name}: {status:?}"));
                    continue;
                }
                self.header_bytes.0 += (name.len() + value.len()) as u64;
                self.request.set(name, value);
            }
        }
    }
}

impl HttpContext for TelemetryStream {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        self.request_headers(&mut HostRequest::new(self.log()));
        Action::Continue
    }

    fn on_http_request_body(&mut self, body_size: usize, _end_of_stream: bool) -> Action {
        self.count_body(BufferType::HttpRequestBody, body_size);
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let config = Rc::clone(&self.config);
        // One read of the whole map: its size, its status and the headers
        // wanted cost less than a property read each.
        let map = match header_map(HeaderMapKind::HttpResponseHeaders) {
            Ok(map) => map,
            Err(e) => {
                self.log()
                    .line(LogLevel::Warn, &format!("reading response headers: {e}"));
                return Action::Continue;
            }
        };
        self.response = keep(&map, &config.plan.needs().response_headers);
        self.header_bytes.1 = map.byte_size() as u64;
        self.response_code = map.get(":status").and_then(|s| s.parse().ok());
        if config.plan.peer_exchange() {
            match self.reporter {
                Reporter::Source => {
                    let metadata = self.response.get(peer::METADATA_HEADER).map(str::to_owned);
                    let id = self.response.get(peer::ID_HEADER).map(str::to_owned);
                    let removed = self.take_peer(
                        HeaderMapKind::HttpResponseHeaders,
                        metadata.as_deref(),
                        id.as_deref(),
                    );
                    self.header_bytes.1 = self.header_bytes.1.saturating_sub(removed);
                }
                Reporter::Destination if self.peer_sent => {
                    self.header_bytes.1 += self.send_own(HeaderMapKind::HttpResponseHeaders);
                }
                Reporter::Destination => {}
            }
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, _end_of_stream: bool) -> Action {
        self.count_body(BufferType::HttpResponseBody, body_size);
        Action::Continue
    }

    fn on_log(&mut self) {
        let config = Rc::clone(&self.config);
        let plan = &config.plan;
        let (mtls, local_principal, peer_principal) = security(self.reporter);
        let cluster = attributes::CLUSTER_NAME.read(&mut HostProperties);
        let service = config.service(cluster.as_deref(), self.request.get(":authority"));
        let response_code = self.response_code;
        let facts = Facts {
            reporter: self.reporter,
            local: &config.local,
            peer: self.peer.as_deref(),
            local_principal: local_principal.as_deref(),
            peer_principal: peer_principal.as_deref(),
            mtls,
            protocol: if self.grpc {
                Protocol::Grpc
            } else {
                Protocol::Http
            },
            response_code,
            grpc_status: if self.grpc {
                attributes::RESPONSE_GRPC_STATUS.read(&mut HostProperties)
            } else {
                None
            },
            flags: attributes::RESPONSE_FLAGS
                .read(&mut HostProperties)
                .unwrap_or(0),
            service: service.as_deref(),
        };
        // Measured as the request passed: Envoy's properties for these cost
        // tens of thousands of instructions each.
        let measures = HttpMeasures {
            duration_ms: now_nanos().saturating_sub(self.started_nanos) / 1_000_000,
            request_bytes: self.header_bytes.0 + self.body_bytes.0,
            response_bytes: self.header_bytes.1 + self.body_bytes.1,
            request_messages: self.request_messages.messages(),
            response_messages: self.response_messages.messages(),
        };
        let (downstream, upstream) = match self.reporter {
            Reporter::Destination => (self.peer.as_deref(), None),
            Reporter::Source => (None, self.peer.as_deref()),
        };
        let mut attrs = Attrs::new(&self.request, &self.response, downstream, upstream);
        let changes = plan.http_changes(self.reporter, self.grpc, &measures);
        config.record(&facts, &changes, &mut attrs);
        if !plan.logs(self.reporter) {
            return;
        }
        let (to_log, to_otlp) = plan.log_targets(self.reporter, &mut attrs);
        if !to_log && !to_otlp {
            return;
        }
        let mut entry = self.entry(&facts, cluster.as_deref(), measures.duration_ms);
        entry.extra = plan.custom_tags(&mut attrs);
        let line = plan.render(&entry);
        if to_log {
            // The entry alone, so that the line after Envoy's prefix parses.
            let _ = hostcalls::log(LogLevel::Info, &line);
        }
        if let (true, Some(export)) = (to_otlp, &config.export) {
            let trace = self.request.get("traceparent").and_then(otlp::trace_of);
            let record = otlp::log_record(
                entry.start_time_nanos.unwrap_or(0),
                &line,
                &entry.attributes(),
                trace,
            );
            export.push(&config.metrics, record);
        }
    }
}
