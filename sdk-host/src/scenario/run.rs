//! Playing a scenario in a [`Host`] and judging what came back.

use super::format::{
    Body, CalloutAnswer, DELAY_TOLERANCE, EARLY_TOLERANCE, Exchange, Expect, ExpectedLog,
    GrpcAnswer, Observed, PATIENCE, Report, Scenario, UPSTREAM_CLUSTER, UpstreamResponse,
    UpstreamSaw,
};
use super::load::configuration;
use crate::{
    CalloutResponse, Error, GrpcCall, HeaderMap, Host, HostBuilder, HttpCall, LogLevel,
    MetricValue, WasmModule,
};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// The body Envoy's router gives a callout to a cluster nobody listens on
/// (1.40, a refused TCP connection): a scenario's `unreachable` answer.
///
/// ```
/// assert!(sdk_host::scenario::UNREACHABLE_BODY.ends_with("remote connection failure"));
/// ```
pub const UNREACHABLE_BODY: &str = "upstream connect error or disconnect/reset before headers. reset reason: remote connection failure";

impl Scenario {
    /// A host builder with this scenario's plugins, VM and properties, and
    /// its clusters: [`UPSTREAM_CLUSTER`] and every one of `clusters:`.
    ///
    /// ```
    /// # let module = sdk_host::doc_support::pass_through()?;
    /// use sdk_host::scenario::Scenario;
    /// let scenario = Scenario::from_yaml("pass.yaml", "filter: pass.wasm\nrequests: [{}]\n")?;
    /// // The scenario's plugin, with a setting of the test's own.
    /// let mut host = scenario.host_builder().seed(7).start(&module)?;
    /// assert!(scenario.play(&mut host)?.passed());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn host_builder(&self) -> HostBuilder {
        let mut builder = Host::builder()
            .cluster(UPSTREAM_CLUSTER)
            .vm_id(&self.vm_id)
            .vm_config(self.vm_config_bytes())
            .plugin(&self.plugin_name(), &self.root_id, self.config_bytes());
        for plugin in &self.plugins {
            builder = builder.plugin(
                &self.extra_plugin_name(plugin),
                &plugin.root_id,
                configuration(&plugin.config),
            );
        }
        for cluster in self.clusters.keys() {
            builder = builder.cluster(cluster);
        }
        // from_yaml checked them; a Scenario built in code may not be.
        for (path, value) in self.property_values().unwrap_or_default() {
            builder = builder.property_path(path, value);
        }
        builder
    }

    /// Runs the scenario through `module` in a fresh host.
    ///
    /// # Errors
    ///
    /// The plugin does not start (a trap while starting included).
    ///
    /// ```
    /// # let module = sdk_host::doc_support::pass_through()?;
    /// use sdk_host::scenario::Scenario;
    /// let yaml = "filter: pass.wasm\nrequests: [{body: hi, expect: {status: 200, upstreamBody: hi}}]\n";
    /// let report = Scenario::from_yaml("pass.yaml", yaml)?.run(&module)?;
    /// assert!(report.passed(), "{:?}", report.failures);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn run(&self, module: &WasmModule) -> Result<Report, Error> {
        let mut host = self.host_builder().start(module)?;
        self.play(&mut host)
    }

    /// Runs the scenario through a filter linked into the test binary.
    ///
    /// # Errors
    ///
    /// As [`run`](Self::run).
    ///
    /// ```ignore
    /// // In a filter crate's tests, with sdk-host's `native` feature:
    /// let scenario = sdk_host::scenario::Scenario::from_file("tests/deny-admin.yaml")?;
    /// let report = scenario.run_native(sdk_host::native_module!(my_filter))?;
    /// assert!(report.passed(), "{:#?}", report.failures);
    /// ```
    #[cfg(feature = "native")]
    pub fn run_native(&self, module: crate::native::NativeModule) -> Result<Report, Error> {
        let mut host = self.host_builder().start_native(module)?;
        self.play(&mut host)
    }

    /// Plays the requests through a started host and judges the outcome;
    /// anything Envoy would refuse ([`Host::violations`]) is a failure too,
    /// and so is a trap, reported with what the guest logged before it
    /// (the requests after it are not played).
    ///
    /// # Errors
    ///
    /// The host refuses a step (the VM had failed before the play).
    ///
    /// ```
    /// # let module = sdk_host::doc_support::pass_through()?;
    /// use sdk_host::scenario::Scenario;
    /// let scenario = Scenario::from_yaml("pass.yaml", "filter: pass.wasm\nrequests: [{}]\n")?;
    /// let mut host = scenario.host_builder().start(&module)?;
    /// // Playing twice on one host: state such as metrics carries over.
    /// assert!(scenario.play(&mut host)?.passed());
    /// assert!(scenario.play(&mut host)?.passed());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn play(&self, host: &mut Host) -> Result<Report, Error> {
        let mut player = Player {
            scenario: self,
            calls: BTreeMap::new(),
            left_to_time_out: BTreeSet::new(),
            failures: Vec::new(),
        };
        let mut observed = Vec::new();
        let mut trapped = None;
        for (i, exchange) in self.requests.iter().enumerate() {
            match player.exchange(host, exchange, i) {
                Ok(got) => observed.push(got),
                Err(Error::Trap(trap)) => {
                    trapped = Some(format!("request {}: {trap}", i + 1));
                    break;
                }
                Err(other) => return Err(other),
            }
        }
        if trapped.is_none() {
            let idle = UpstreamResponse::default();
            let after = player
                .settle(host, &idle)
                .and_then(|()| match self.advance {
                    Some(advance) => player.advance(host, advance, &idle),
                    None => Ok(()),
                });
            match after {
                Err(Error::Trap(trap)) => trapped = Some(format!("after the requests: {trap}")),
                other => other?,
            }
        }
        // A trap fails the VM for good, as in Envoy: the rest is not played.
        player.failures.extend(trapped);
        for i in observed.len()..self.requests.len() {
            player
                .failures
                .push(format!("request {}: not played: the VM failed", i + 1));
        }
        let metrics = host.proxy().metrics();
        let logs: Vec<(LogLevel, String)> = host
            .logs()
            .iter()
            .map(|r| (r.level, r.message.clone()))
            .collect();
        let mut report = self.judge(
            observed,
            |name| match metrics.get(name)? {
                MetricValue::Counter(n) => i64::try_from(*n).ok(),
                MetricValue::Gauge(n) => Some(*n),
                MetricValue::Histogram(values) => i64::try_from(values.len()).ok(),
            },
            &logs,
        );
        report.failures.append(&mut player.failures);
        let recorded: Vec<String> = host.violations().iter().map(ToString::to_string).collect();
        for violation in &recorded {
            if !self
                .violations
                .iter()
                .any(|v| violation.contains(v.as_str()))
            {
                report
                    .failures
                    .push(format!("Envoy would not do this: {violation}"));
            }
        }
        for expected in &self.violations {
            if !recorded.iter().any(|v| v.contains(expected.as_str())) {
                report
                    .failures
                    .push(format!("violations: {expected:?} was not recorded"));
            }
        }
        Ok(report)
    }

    /// Compares what each request got, the metrics (looked up by name) and
    /// the log messages with the expectations.
    ///
    /// ```
    /// use sdk_host::scenario::{Observed, Scenario};
    /// use sdk_host::LogLevel;
    /// let yaml = "filter: f.wasm\nrequests: [{expect: {status: 200}}]\nmetrics: {hits: 1}\nlogs: [ready]\n";
    /// let scenario = Scenario::from_yaml("s.yaml", yaml)?;
    /// // What another host observed, e.g. a real Envoy.
    /// let got = vec![Observed { status: Some(200), ..Observed::default() }];
    /// let report = scenario.judge(got, |name| (name == "hits").then_some(1), &[(LogLevel::Info, "ready".into())]);
    /// assert!(report.passed(), "{:?}", report.failures);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn judge(
        &self,
        observed: Vec<Observed>,
        metric: impl Fn(&str) -> Option<i64>,
        logs: &[(LogLevel, String)],
    ) -> Report {
        let mut failures = Vec::new();
        for (i, (exchange, got)) in self.requests.iter().zip(&observed).enumerate() {
            let label = if exchange.name.is_empty() {
                format!("request {}", i + 1)
            } else {
                format!("request {} ({})", i + 1, exchange.name)
            };
            failures.extend(
                exchange
                    .expect
                    .mismatches(got)
                    .into_iter()
                    .map(|m| format!("{label}: {m}")),
            );
        }
        for (name, want) in &self.metrics {
            match metric(name) {
                Some(got) if got == *want => {}
                Some(got) => failures.push(format!("metric {name}: expected {want}, got {got}")),
                None => failures.push(format!("metric {name}: expected {want}, not defined")),
            }
        }
        let mut rest = logs.iter();
        let mut previous: Option<&ExpectedLog> = None;
        for want in &self.logs {
            if !rest.any(|(level, message)| want.matches(*level, message)) {
                let after = previous.map(|p| format!(" after {p}")).unwrap_or_default();
                failures.push(format!("logs: {want} was not logged{after}"));
                break;
            }
            previous = Some(want);
        }
        Report {
            observed,
            failures,
            logs: logs.to_vec(),
        }
    }
}

impl Exchange {
    /// The request headers as a filter behind Envoy's HTTP/1 listener sees
    /// them: the pseudo-headers in the codec's order (`:authority`,
    /// `:path`, `:method`, `:scheme`), the client's headers in the order
    /// sent (`host` became `:authority`), a body's `content-length`, then
    /// what the connection manager adds when the client did not send it:
    /// `x-forwarded-proto` and `x-request-id` (`request_id`, here given).
    ///
    /// ```
    /// use sdk_host::scenario::Scenario;
    /// let scenario = Scenario::from_yaml("s.yaml", "filter: f.wasm\nrequests: [{headers: {\":path\": /a, X-Tag: t, accept: \"*/*\"}}]\n")?;
    /// let headers = scenario.requests[0].request_headers("7a3c5b51-0c1e-4a6a-9e7f-3b2d1c0e9f8a");
    /// let names: Vec<&str> = headers.iter().map(|(n, _)| n.as_str()).collect();
    /// assert_eq!(names, [":authority", ":path", ":method", ":scheme", "x-tag", "accept", "x-forwarded-proto", "x-request-id"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn request_headers(&self, request_id: &str) -> Vec<(String, String)> {
        let mut headers = self.client_headers();
        let sent = |name: &str| headers.iter().any(|(n, _)| n == name);
        let scheme = headers
            .iter()
            .find(|(n, _)| n == ":scheme")
            .map_or_else(|| "http".to_string(), |(_, v)| v.clone());
        let mut added = Vec::new();
        if let Some(body) = &self.body
            && !sent("content-length")
        {
            added.push(("content-length".to_string(), body.bytes().len().to_string()));
        }
        if !sent("x-forwarded-proto") {
            added.push(("x-forwarded-proto".to_string(), scheme));
        }
        if !sent("x-request-id") {
            added.push(("x-request-id".to_string(), request_id.to_string()));
        }
        headers.extend(added);
        headers
    }

    /// The request as the client sends it: the four pseudo-headers (with
    /// their defaults) in the order Envoy's HTTP/1 codec gives them, then
    /// the other headers in the file's order, names in lower case.
    ///
    /// ```
    /// use sdk_host::scenario::Scenario;
    /// let scenario = Scenario::from_yaml("s.yaml", "filter: f.wasm\nrequests: [{headers: {\":method\": POST, x-b: [\"1\", \"2\"], x-a: z}}]\n")?;
    /// let sent = scenario.requests[0].client_headers();
    /// assert_eq!(sent[2], (":method".to_string(), "POST".to_string()));
    /// assert_eq!(sent[4..], [("x-b".into(), "1".into()), ("x-b".into(), "2".into()), ("x-a".into(), "z".into())]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn client_headers(&self) -> Vec<(String, String)> {
        let mut headers: Vec<(String, String)> = [
            (":authority", "example.com"),
            (":path", "/"),
            (":method", "GET"),
            (":scheme", "http"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect();
        for (name, values) in &self.headers {
            let name = name.to_ascii_lowercase();
            let name = if name == "host" {
                ":authority".to_string()
            } else {
                name
            };
            let values = values.values().iter().map(|v| (name.clone(), v.clone()));
            match headers.iter().position(|(n, _)| *n == name) {
                Some(at) if name.starts_with(':') => {
                    headers.splice(at..=at, values.take(1));
                }
                _ => headers.extend(values),
            }
        }
        headers
    }
}

impl Expect {
    /// Every way `got` differs from this expectation, one line each.
    ///
    /// ```
    /// use sdk_host::scenario::{Expect, Observed};
    /// let expect = Expect { status: Some(200), body: Some("ok".into()), ..Expect::default() };
    /// let got = Observed { status: Some(503), body: b"ok".to_vec(), ..Observed::default() };
    /// assert_eq!(expect.mismatches(&got), ["status: expected 200, got 503"]);
    /// ```
    pub fn mismatches(&self, got: &Observed) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(want) = self.status {
            match got.status {
                Some(status) if status == want => {}
                Some(status) => out.push(format!("status: expected {want}, got {status}")),
                None => out.push(format!("status: expected {want}, no answer came")),
            }
        }
        compare_headers("header", &self.headers, &got.headers, &mut out);
        if let Some(want) = &self.body
            && want.as_bytes() != got.body.as_slice()
        {
            out.push(format!(
                "body: expected {want:?}, got {:?}",
                String::from_utf8_lossy(&got.body)
            ));
        }
        if let Some(want) = self.reaches_upstream
            && want != got.upstream.is_some()
        {
            out.push(if want {
                "expected to reach the upstream, it did not".into()
            } else {
                "reached the upstream, expected not to".into()
            });
        }
        let wants_upstream = !self.upstream_headers.is_empty() || self.upstream_body.is_some();
        match &got.upstream {
            Some(saw) => {
                compare_headers(
                    "upstream header",
                    &self.upstream_headers,
                    &saw.headers,
                    &mut out,
                );
                if let Some(want) = &self.upstream_body
                    && want.as_bytes() != saw.body.as_slice()
                {
                    out.push(format!(
                        "upstream body: expected {want:?}, got {:?}",
                        String::from_utf8_lossy(&saw.body)
                    ));
                }
            }
            None if wants_upstream && self.reaches_upstream.is_none() => {
                out.push("upstream: expected headers or body there, nothing reached it".into());
            }
            None => {}
        }
        if let Some(want) = self.delay
            && (got.elapsed + EARLY_TOLERANCE < want || got.elapsed >= want + DELAY_TOLERANCE)
        {
            out.push(format!(
                "delay: expected {} ms, the answer came after {} ms",
                want.as_millis(),
                got.elapsed.as_millis()
            ));
        }
        out
    }
}

fn compare_headers(
    what: &str,
    want: &BTreeMap<String, Option<String>>,
    got: &HeaderMap,
    out: &mut Vec<String>,
) {
    for (name, value) in want {
        let actual = got.get(name);
        if actual != value.as_deref() {
            out.push(match (value, actual) {
                (Some(v), Some(a)) => format!("{what} {name}: expected {v:?}, got {a:?}"),
                (Some(v), None) => format!("{what} {name}: expected {v:?}, absent"),
                (None, Some(a)) => format!("{what} {name}: expected absent, got {a:?}"),
                (None, None) => continue,
            });
        }
    }
}

/// One play of a scenario: how many calls each cluster has had, which
/// callouts are left to time out, and the answers it could not give.
struct Player<'a> {
    scenario: &'a Scenario,
    calls: BTreeMap<String, usize>,
    left_to_time_out: BTreeSet<u32>,
    failures: Vec<String>,
}

impl Player<'_> {
    /// Plays one exchange: the request, the automatic passing of simulated
    /// time while the filter holds it (delays, ticks, callouts), the
    /// upstream's answer.
    fn exchange(
        &mut self,
        host: &mut Host,
        exchange: &Exchange,
        index: usize,
    ) -> Result<Observed, Error> {
        let started = host.elapsed();
        let stream = host.new_http_stream()?;
        let body = exchange.body.as_ref().map(Body::bytes);
        let headers = exchange.request_headers(&request_id(index));
        let end = body.is_none() && exchange.trailers.is_none();
        host.send_request_headers(stream, &headers, end)?;
        if let Some(body) = &body {
            // Envoy's HTTP/1 codec passes a body on as it arrives and the end
            // of the message after it, as an empty last piece.
            host.send_request_body(stream, body, false)?;
            if exchange.trailers.is_none() {
                host.send_request_body(stream, [], true)?;
            }
        }
        if let Some(trailers) = &exchange.trailers {
            let pairs: Vec<(&String, &String)> = trailers.iter().collect();
            host.send_request_trailers(stream, &pairs)?;
        }
        let deadline = started + PATIENCE;
        let response = exchange.response.clone().unwrap_or_default();
        let request_done = |host: &Host| {
            host.http(stream).map_or(true, |view| {
                view.upstream().complete
                    || view.local_response().is_some()
                    || view.reset().is_some()
                    || view.downstream().headers.is_some()
            })
        };
        self.wait_until(host, deadline, &response, request_done)?;
        let view = host.http(stream)?;
        let upstream = view.upstream().complete.then(|| {
            let headers = view.upstream().headers.clone().unwrap_or_default();
            let body = as_read(&headers, &view.upstream().body);
            UpstreamSaw { headers, body }
        });
        let answered_locally =
            view.local_response().is_some() || view.downstream().headers.is_some();
        if upstream.is_some() && !answered_locally && view.reset().is_none() {
            let (pairs, body) = upstream_answer(&response);
            host.send_response_headers(stream, &pairs, body.is_none())?;
            if let Some(body) = &body {
                host.send_response_body(stream, body, false)?;
                host.send_response_body(stream, [], true)?;
            }
        }
        self.wait_until(host, deadline, &response, |host| {
            host.http(stream).map_or(true, |view| {
                view.downstream().complete || view.reset().is_some()
            })
        })?;
        let view = host.http(stream)?;
        let downstream = view.downstream();
        let pending = if downstream.complete || view.reset().is_some() {
            Vec::new()
        } else {
            pending_calls(host)
        };
        let local_reply = view.local_response().map(|local| local.details.clone());
        let observed = Observed {
            status: downstream
                .headers
                .as_ref()
                .filter(|_| view.reset().is_none())
                .and_then(|h| h.get(":status"))
                .and_then(|s| s.parse().ok()),
            headers: downstream.headers.clone().unwrap_or_default(),
            body: as_read(
                downstream.headers.as_ref().unwrap_or(&HeaderMap::default()),
                &downstream.body,
            ),
            upstream,
            elapsed: host.elapsed().saturating_sub(started),
            local_reply,
            pending,
        };
        host.finish(stream)?;
        if let Some(advance) = exchange.advance {
            self.advance(host, advance, &response)?;
        }
        Ok(observed)
    }

    /// Answers callouts and lets simulated time pass, one timer at a
    /// time, until `done` or the deadline.
    fn wait_until(
        &mut self,
        host: &mut Host,
        deadline: Duration,
        response: &UpstreamResponse,
        done: impl Fn(&Host) -> bool,
    ) -> Result<(), Error> {
        loop {
            self.settle(host, response)?;
            if done(host) {
                return Ok(());
            }
            match host.next_timer() {
                Some(due) if host.elapsed() + due <= deadline => host.advance(due)?,
                _ => return Ok(()),
            }
        }
    }

    /// Lets `by` pass, firing each timer at its time and answering the
    /// callouts made meanwhile, as the clusters would.
    fn advance(
        &mut self,
        host: &mut Host,
        by: Duration,
        response: &UpstreamResponse,
    ) -> Result<(), Error> {
        let until = host.elapsed() + by;
        loop {
            self.settle(host, response)?;
            let left = until.saturating_sub(host.elapsed());
            match host.next_timer() {
                Some(due) if due <= left && !left.is_zero() => {
                    host.advance(due.max(Duration::from_nanos(1)))?
                }
                _ => return host.advance(left),
            }
        }
    }

    /// Answers every pending callout whose cluster has an answer ready;
    /// an answer may make more calls, which are answered in turn.
    fn settle(&mut self, host: &mut Host, response: &UpstreamResponse) -> Result<(), Error> {
        loop {
            let http = host
                .http_calls()
                .into_iter()
                .find(|c| !self.left_to_time_out.contains(&c.token));
            if let Some(call) = http {
                self.answer_http(host, &call, response)?;
                continue;
            }
            // A stream is answered once the guest has sent on it.
            let grpc = host.grpc_calls().into_iter().find(|c| {
                !self.left_to_time_out.contains(&c.token)
                    && (!c.streaming || !c.messages.is_empty() || c.local_closed)
            });
            match grpc {
                Some(call) => self.answer_grpc(host, &call)?,
                None => return Ok(()),
            }
        }
    }

    /// The next answer of the cluster a call went to, if `clusters:` names it.
    fn next_answer(&mut self, cluster: &str) -> Option<CalloutAnswer> {
        let answers = self.scenario.clusters.get(cluster)?;
        let calls = self.calls.entry(cluster.to_string()).or_insert(0);
        let answer = answers.nth(*calls).clone();
        *calls += 1;
        Some(answer)
    }

    fn answer_http(
        &mut self,
        host: &mut Host,
        call: &HttpCall,
        response: &UpstreamResponse,
    ) -> Result<(), Error> {
        let answer = match self.next_answer(&call.upstream) {
            Some(answer) => answer,
            None => CalloutAnswer::Http(response.clone()),
        };
        match answer {
            CalloutAnswer::Http(answer) => {
                let (pairs, body) = upstream_answer(&answer);
                let mut reply = CalloutResponse::new(answer.status);
                for (name, value) in pairs.iter().skip(1) {
                    reply = reply.header(name, value);
                }
                host.respond_http_call(call.token, reply.body(body.unwrap_or_default()))
            }
            CalloutAnswer::Unreachable => host.respond_http_call(
                call.token,
                CalloutResponse::new(503)
                    .header("content-length", &UNREACHABLE_BODY.len().to_string())
                    .header("content-type", "text/plain")
                    .body(UNREACHABLE_BODY),
            ),
            CalloutAnswer::Timeout => {
                self.left_to_time_out.insert(call.token);
                Ok(())
            }
            CalloutAnswer::Grpc(_) => {
                self.failures.push(format!(
                    "clusters.{}: answers gRPC, and the filter made an HTTP call to it",
                    call.upstream
                ));
                self.left_to_time_out.insert(call.token);
                Ok(())
            }
        }
    }

    fn answer_grpc(&mut self, host: &mut Host, call: &GrpcCall) -> Result<(), Error> {
        let cluster = String::from_utf8_lossy(&call.upstream).into_owned();
        let answer = match self.next_answer(&cluster) {
            Some(CalloutAnswer::Grpc(answer)) => answer,
            Some(CalloutAnswer::Unreachable) => GrpcAnswer {
                status: 14,
                message: UNREACHABLE_BODY.to_string(),
                ..GrpcAnswer::default()
            },
            Some(CalloutAnswer::Timeout) => {
                self.left_to_time_out.insert(call.token);
                return Ok(());
            }
            Some(CalloutAnswer::Http(_)) | None => {
                self.failures.push(format!(
                    "clusters.{cluster}: no gRPC answer for {}/{} (give {{grpc: ...}})",
                    call.service, call.method
                ));
                self.left_to_time_out.insert(call.token);
                return Ok(());
            }
        };
        if !call.streaming {
            return match (&answer.body, answer.status) {
                (body, 0) => host.grpc_respond(
                    call.token,
                    body.as_ref().map(Body::bytes).unwrap_or_default(),
                ),
                // Envoy 1.40 gives a unary call's error message with the
                // response's details appended.
                (_, status) => {
                    let message = format!("{}{{via_upstream}}", answer.message);
                    host.grpc_close(call.token, status, &message)
                }
            };
        }
        let alive = |host: &Host| host.grpc_calls().iter().any(|c| c.token == call.token);
        let metadata = HeaderMap::from_pairs(answer.initial_metadata.iter());
        host.grpc_receive_initial_metadata(call.token, metadata)?;
        for message in &answer.messages {
            if !alive(host) {
                return Ok(());
            }
            host.grpc_receive(call.token, message.bytes())?;
        }
        if !alive(host) {
            return Ok(());
        }
        let mut trailers = HeaderMap::from_pairs([("grpc-status", answer.status.to_string())]);
        if !answer.message.is_empty() {
            trailers.add("grpc-message", &answer.message);
        }
        for (name, value) in &answer.trailers {
            trailers.add(name, value);
        }
        host.grpc_receive_trailing_metadata(call.token, trailers)?;
        if alive(host) {
            host.grpc_close(call.token, answer.status, &answer.message)?;
        }
        Ok(())
    }
}

/// Every open callout, one line each.
fn pending_calls(host: &Host) -> Vec<String> {
    let http = host.http_calls().into_iter().map(|call| {
        format!(
            "HTTP call {} to {}: {} {}",
            call.token,
            call.upstream,
            call.headers.get(":method").unwrap_or("?"),
            call.headers.get(":path").unwrap_or("?")
        )
    });
    let grpc = host.grpc_calls().into_iter().map(|call| {
        format!(
            "gRPC {} {} to {}: {}/{}",
            if call.streaming { "stream" } else { "call" },
            call.token,
            String::from_utf8_lossy(&call.upstream),
            call.service,
            call.method
        )
    });
    http.chain(grpc).collect()
}

/// An upstream's answer as the filter gets it from Envoy's router: the
/// headers (`:status`, the file's, `content-length` as an HTTP/1 server
/// sends it, 0 for no body, except on 204 and 304), then the router's
/// `x-envoy-upstream-service-time` (no time passes here), and the body.
fn upstream_answer(response: &UpstreamResponse) -> (Vec<(String, String)>, Option<Vec<u8>>) {
    let mut pairs = vec![(":status".to_string(), response.status.to_string())];
    pairs.extend(response.headers.clone());
    let body = response.body.as_ref().map(Body::bytes);
    let sent = |name: &str| pairs.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
    if !matches!(response.status, 204 | 304) && !sent("content-length") {
        let length = body.as_ref().map_or(0, Vec::len);
        pairs.push(("content-length".into(), length.to_string()));
    }
    pairs.push(("x-envoy-upstream-service-time".into(), "0".into()));
    (pairs, body)
}

/// A request id in `x-request-id`'s UUID form, the same for the same
/// request of every run (Envoy's are random).
fn request_id(index: usize) -> String {
    let mut x = (index as u64).wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut next = || {
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let (a, b) = (next(), next());
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0x0fff,
        0x8000 | (b >> 48) & 0x3fff,
        b & 0xffff_ffff_ffff
    )
}

/// The body as the peer reads it: no more than `content-length` says.
fn as_read(headers: &HeaderMap, body: &[u8]) -> Vec<u8> {
    let declared = headers
        .get("content-length")
        .and_then(|v| v.trim().parse::<usize>().ok());
    body[..declared.map_or(body.len(), |n| n.min(body.len()))].to_vec()
}
