//! The module as Envoy's network filter: Istio's TCP metrics for each
//! connection, reported as bytes flow and when it closes.

use super::{Configured, attrs::Attrs, attrs::Kept, reporter, security};
use meshwasm_core::properties::attributes;
use meshwasm_core::telemetry::TcpMeasures;
use meshwasm_core::telemetry::labels::{Facts, Protocol, Reporter};
use meshwasm_plugin::host::HostProperties;
use proxy_wasm::traits::{Context, StreamContext};
use proxy_wasm::types::{Action, PeerType};
use std::rc::Rc;

/// One TCP connection.
pub(crate) struct TcpStream {
    config: Rc<Configured>,
    reporter: Reporter,
    /// What is not reported yet.
    pending: TcpMeasures,
    /// Whether the upstream answered, so the cluster is known.
    upstream_seen: bool,
    closed: bool,
}

impl TcpStream {
    pub(crate) fn new(config: Rc<Configured>) -> Self {
        TcpStream {
            config,
            reporter: Reporter::Destination,
            pending: TcpMeasures::default(),
            upstream_seen: false,
            closed: false,
        }
    }

    fn flush(&mut self) {
        if self.pending == TcpMeasures::default() {
            return;
        }
        let config = Rc::clone(&self.config);
        let (mtls, local_principal, peer_principal) = security(self.reporter);
        let cluster = attributes::CLUSTER_NAME.read(&mut HostProperties);
        let service = config.service(cluster.as_deref(), None);
        let facts = Facts {
            reporter: self.reporter,
            local: &config.local,
            peer: None,
            local_principal: local_principal.as_deref(),
            peer_principal: peer_principal.as_deref(),
            mtls,
            protocol: Protocol::Tcp,
            response_code: None,
            grpc_status: None,
            flags: attributes::RESPONSE_FLAGS
                .read(&mut HostProperties)
                .unwrap_or(0),
            service: service.as_deref(),
        };
        let (request, response) = (Kept::default(), Kept::default());
        let mut attrs = Attrs::new(&request, &response, None, None);
        let measures = std::mem::take(&mut self.pending);
        let changes = config.plan.tcp_changes(self.reporter, &measures);
        config.record(&facts, &changes, &mut attrs);
    }
}

impl Context for TcpStream {}

impl StreamContext for TcpStream {
    fn on_new_connection(&mut self) -> Action {
        self.reporter = reporter(&self.config.plan);
        self.pending.opened = true;
        Action::Continue
    }

    fn on_downstream_data(&mut self, data_size: usize, _end_of_stream: bool) -> Action {
        self.pending.received += data_size as u64;
        if self.upstream_seen {
            self.flush();
        }
        Action::Continue
    }

    fn on_upstream_data(&mut self, data_size: usize, _end_of_stream: bool) -> Action {
        self.pending.sent += data_size as u64;
        self.upstream_seen = true;
        self.flush();
        Action::Continue
    }

    fn on_downstream_close(&mut self, _peer: PeerType) {
        self.close();
    }

    fn on_log(&mut self) {
        self.close();
    }
}

impl TcpStream {
    /// Reports the rest and the close, once.
    fn close(&mut self) {
        if !self.closed {
            self.closed = true;
            self.pending.closed = true;
            self.flush();
        }
    }
}
