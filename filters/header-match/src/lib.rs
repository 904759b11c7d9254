//! meshwasm header-match filter: Istio's AuthorizationPolicy (ALLOW, DENY,
//! AUDIT) and header rules as a Proxy-Wasm filter.
//!
//! For each request the filter reads the header map once, asks
//! `meshwasm_core::authz::AuthzPlan` to read it as a backend would (its
//! own path normalization, hosts without ports, every reading of a
//! repeated header) and to decide, then answers 400 to a malformed
//! request, 403 (`RBAC: access denied`) to a denied one, or forwards it
//! with the header rules' edits.
//!
//! Metrics: `meshwasm.header_match.{allowed,denied,rejected,audited}`.

use meshwasm_core::authz::{AuthzPlan, DENIED_BODY, Peer, Verdict, metric};
use meshwasm_core::header_ops::HeaderOp;
use meshwasm_core::properties::{Attribute, attributes};
use meshwasm_plugin::headers::{HeaderMapKind, HostRequest, apply_edits};
use meshwasm_plugin::host::HostProperties;
use meshwasm_plugin::reply::{LocalReply, send_local_reply};
use meshwasm_plugin::{Filter, Log, Metrics, Plugin, Setup};
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, LogLevel};
use std::rc::Rc;

meshwasm_plugin::main!(HeaderMatch);

/// The response code details of a rejected (malformed) request.
const REJECTED_DETAILS: &str = "meshwasm_header_match_malformed_request";

/// The filter keeps no state beyond its configuration.
#[derive(Default)]
pub struct HeaderMatch;

/// The configuration in force.
pub struct Configured {
    plan: AuthzPlan,
    metrics: Metrics,
}

impl Filter for HeaderMatch {
    const NAME: &'static str = "meshwasm header-match";
    type Plan = AuthzPlan;
    type Config = Configured;
    type Stream = HeaderMatchStream;

    fn configure(_plugin: &Plugin<Self>, plan: AuthzPlan, setup: Setup<'_>) -> Configured {
        Configured {
            plan,
            metrics: setup.metrics,
        }
    }

    fn stream(
        plugin: &Rc<Plugin<Self>>,
        config: Rc<Configured>,
        _context_id: u32,
    ) -> HeaderMatchStream {
        HeaderMatchStream {
            log: plugin.log(),
            config,
            response_edits: Vec::new(),
        }
    }
}

/// One request.
pub struct HeaderMatchStream {
    log: Log,
    config: Rc<Configured>,
    /// Header rule edits for the response, owned.
    response_edits: Vec<(String, Option<String>, bool)>,
}

impl Context for HeaderMatchStream {}

fn property<T: meshwasm_core::properties::PropertyValue>(
    wanted: bool,
    attribute: Attribute<T>,
) -> Option<T> {
    if wanted {
        attribute.read(&mut HostProperties)
    } else {
        None
    }
}

impl HttpContext for HeaderMatchStream {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let config = Rc::clone(&self.config);
        let plan = &config.plan;
        let needs = plan.needs();
        let peer = Peer {
            source_address: property(needs.source_address, attributes::SOURCE_ADDRESS),
            destination_address: property(
                needs.destination_address,
                attributes::DESTINATION_ADDRESS,
            ),
            destination_port: property(needs.destination_port, attributes::DESTINATION_PORT)
                .and_then(|p| u32::try_from(p).ok()),
            peer_uri_san: property(needs.peer_identity, attributes::URI_SAN_PEER_CERTIFICATE),
            sni: property(needs.sni, attributes::REQUESTED_SERVER_NAME),
        };
        let mut raw = HostRequest::new(self.log);
        let read = plan.read(raw.headers().iter(), peer);
        let req = match read {
            Ok(req) => req,
            Err(why) => {
                config.metrics.add(metric::REJECTED, 1);
                self.log.line(
                    LogLevel::Debug,
                    &format!("rejected a malformed request: {why}"),
                );
                self.reply(400, REJECTED_DETAILS, b"bad request");
                return Action::Pause;
            }
        };
        let decision = plan.decide(&req, &mut raw);
        for m in AuthzPlan::counted(&decision).into_iter().flatten() {
            config.metrics.add(m, 1);
        }
        if decision.audited {
            self.log.line(
                LogLevel::Info,
                &format!("audit: {} {}", req.method(), req.path()),
            );
        }
        match decision.verdict {
            Verdict::Deny { details } => {
                self.reply(plan.deny_status(), &details, DENIED_BODY.as_bytes());
                Action::Pause
            }
            Verdict::Allow => {
                if let Err(e) =
                    apply_edits(HeaderMapKind::HttpRequestHeaders, decision.request_edits)
                {
                    self.log.line(LogLevel::Warn, &e);
                }
                self.response_edits = decision
                    .response_edits
                    .into_iter()
                    .map(|op| match op {
                        HeaderOp::Remove(n) => (n.to_owned(), None, false),
                        HeaderOp::Set(n, v) => (n.to_owned(), Some(v.into_owned()), false),
                        HeaderOp::Add(n, v) => (n.to_owned(), Some(v.into_owned()), true),
                    })
                    .collect();
                Action::Continue
            }
        }
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let edits = std::mem::take(&mut self.response_edits);
        let ops = edits.iter().map(|(n, v, add)| match (v, add) {
            (None, _) => HeaderOp::Remove(n),
            (Some(v), false) => HeaderOp::Set(n, v.as_str().into()),
            (Some(v), true) => HeaderOp::Add(n, v.as_str().into()),
        });
        if let Err(e) = apply_edits(HeaderMapKind::HttpResponseHeaders, ops) {
            self.log.line(LogLevel::Warn, &e);
        }
        Action::Continue
    }
}

impl HeaderMatchStream {
    fn reply(&self, status: u16, details: &str, body: &[u8]) {
        let reply = LocalReply {
            status,
            details,
            body,
            grpc_status: None,
        };
        // Envoy gives a local reply with a body `content-type: text/plain`.
        if let Err(status) = send_local_reply(reply, []) {
            self.log.line(
                LogLevel::Error,
                &format!("local response failed: {status:?}"),
            );
        }
    }
}
