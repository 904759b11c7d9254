//! meshwasm header-match filter: Istio's AuthorizationPolicy (CUSTOM,
//! DENY, ALLOW, AUDIT) and header rules as a Proxy-Wasm filter.
//!
//! For each request the filter reads the header map once, asks
//! `meshwasm_core::authz::AuthzPlan` to read it as a backend would (its
//! own path normalization, hosts without ports, every reading of a
//! repeated header) and answers 400 to a malformed request. A request a
//! CUSTOM policy matches waits for its check by the external authorizer
//! (an HTTP call through Envoy), whose denial is the answer. Then the
//! plan decides: 403 (`RBAC: access denied`) to a denied request, or
//! forward it with the check's and the header rules' edits.
//!
//! Metrics: `meshwasm.header_match.{allowed,denied,rejected,audited}` and
//! `meshwasm.header_match.ext_authz.{ok,denied,error,failure_mode_allowed}`.

use meshwasm_core::authz::custom::CheckOutcome;
use meshwasm_core::authz::{
    AuthzPlan, AuthzRequest, DENIED_BODY, Peer, ResponseEdits, Verdict, metric,
};
use meshwasm_core::header_ops::HeaderOp;
use meshwasm_core::properties::{Attribute, attributes};
use meshwasm_plugin::headers::{HeaderMapKind, HostRequest, apply_edits, header_map};
use meshwasm_plugin::host::{HostProperties, http_call_response_body};
use meshwasm_plugin::reply::{LocalReply, send_local_reply};
use meshwasm_plugin::{Filter, Log, Metrics, Plugin, Setup};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, LogLevel};
use std::rc::Rc;

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
            response: ResponseEdits::default(),
            pending: None,
        }
    }
}

/// One request.
pub struct HeaderMatchStream {
    log: Log,
    config: Rc<Configured>,
    /// The response edits owed to the request.
    response: ResponseEdits,
    /// The token of the authorizer's check, and the request read for
    /// matching, while the check is out.
    pending: Option<(u32, AuthzRequest)>,
}

impl Context for HeaderMatchStream {
    fn on_http_call_response(&mut self, token: u32, headers: usize, body_size: usize, _: usize) {
        let mut raw = HostRequest::new(self.log);
        if self.check_answered(token, headers, body_size, &mut raw) == Some(Action::Continue) {
            let _ = hostcalls::resume_http_request();
        }
    }
}

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
        self.request_headers(&mut HostRequest::new(self.log))
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let owed = std::mem::take(&mut self.response);
        let edits = self.config.plan.response_edits(&owed);
        if let Err(e) = apply_edits(HeaderMapKind::HttpResponseHeaders, edits) {
            self.log.line(LogLevel::Warn, &e);
        }
        Action::Continue
    }
}

impl HeaderMatchStream {
    /// Reads the request through `raw` and decides: `Pause` when it was
    /// answered (denied, malformed) or waits for the external authorizer
    /// (see [`is_waiting`](Self::is_waiting)).
    pub fn request_headers(&mut self, raw: &mut HostRequest) -> Action {
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
        if let Some((provider, check)) = plan.check(&req, raw.headers().iter()) {
            let headers: Vec<(&str, &str)> = check
                .headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .collect();
            match hostcalls::dispatch_http_call(
                check.cluster,
                headers,
                None,
                Vec::new(),
                check.timeout,
            ) {
                Ok(token) => {
                    self.pending = Some((token, req));
                    return Action::Pause;
                }
                Err(status) => {
                    self.log.line(
                        LogLevel::Warn,
                        &format!(
                            "calling the authorizer in cluster {}: {status:?} (is the cluster defined?)",
                            check.cluster
                        ),
                    );
                    return self.after_check(req, provider.failed(), raw);
                }
            }
        }
        self.decide(req, raw)
    }

    /// Whether the request waits for the external authorizer's answer.
    pub fn is_waiting(&self) -> bool {
        self.pending.is_some()
    }

    /// Carries out the authorizer's answer to call `token`: `Continue`
    /// when the request may go on (the caller resumes it), `Pause` when it
    /// was answered; `None` when the call is not this stream's.
    pub fn check_answered(
        &mut self,
        token: u32,
        headers: usize,
        body_size: usize,
        raw: &mut HostRequest,
    ) -> Option<Action> {
        let (_, req) = self.pending.take_if(|(t, _)| *t == token)?;
        let config = Rc::clone(&self.config);
        let provider = config.plan.provider()?;
        // Envoy answers a failed call (reset, timeout) with no headers.
        let answer = (headers > 0)
            .then(|| header_map(HeaderMapKind::HttpCallResponseHeaders))
            .and_then(|map| {
                map.map_err(|e| {
                    self.log
                        .line(LogLevel::Warn, &format!("reading the check's answer: {e}"));
                })
                .ok()
            });
        let body = http_call_response_body(body_size).unwrap_or_default();
        let outcome = provider.outcome(answer.as_ref().map(|m| m.iter()), &body);
        Some(self.after_check(req, outcome, raw))
    }

    /// Carries out the authorizer's answer: its denial, or its edits and
    /// then the plan's own decision.
    fn after_check(
        &mut self,
        mut req: AuthzRequest,
        outcome: CheckOutcome,
        raw: &mut HostRequest,
    ) -> Action {
        let config = Rc::clone(&self.config);
        let metrics = &config.metrics;
        match outcome {
            CheckOutcome::Deny {
                status,
                headers,
                body,
                details,
                error,
            } => {
                metrics.add(
                    if error {
                        metric::EXT_AUTHZ_ERROR
                    } else {
                        metric::EXT_AUTHZ_DENIED
                    },
                    1,
                );
                let reply = LocalReply {
                    status,
                    details,
                    body: &body,
                    grpc_status: None,
                };
                let headers = headers.iter().map(|(n, v)| (n.as_str(), v.as_str()));
                if let Err(status) = send_local_reply(reply, headers) {
                    self.log.line(
                        LogLevel::Error,
                        &format!("local response failed: {status:?}"),
                    );
                }
                return Action::Pause;
            }
            CheckOutcome::FailedOpen => {
                metrics.add(metric::EXT_AUTHZ_ERROR, 1);
                metrics.add(metric::EXT_AUTHZ_FAILURE_MODE_ALLOWED, 1);
            }
            CheckOutcome::Allow {
                set,
                remove,
                response_add,
            } => {
                metrics.add(metric::EXT_AUTHZ_OK, 1);
                let edits = remove
                    .iter()
                    .map(|n| HeaderOp::Remove(n))
                    .chain(set.iter().map(|(n, v)| HeaderOp::Set(n, v.as_str().into())));
                if let Err(e) = apply_edits(HeaderMapKind::HttpRequestHeaders, edits) {
                    self.log.line(LogLevel::Warn, &e);
                }
                req.apply_check(&set, &remove);
                self.response.add(response_add);
            }
        }
        self.decide(req, raw)
    }

    /// The plan's DENY, ALLOW and AUDIT decision, carried out.
    fn decide(&mut self, req: AuthzRequest, raw: &mut HostRequest) -> Action {
        let config = Rc::clone(&self.config);
        let plan = &config.plan;
        let decision = plan.decide(&req, raw);
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
                self.response.extend(decision.response);
                Action::Continue
            }
        }
    }

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
