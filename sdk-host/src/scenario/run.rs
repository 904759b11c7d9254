//! Playing a scenario in a [`Host`] and judging what came back.

use super::format::{
    Body, DELAY_TOLERANCE, EARLY_TOLERANCE, Exchange, Expect, ExpectedLog, Observed, PATIENCE,
    Report, Scenario, UPSTREAM_CLUSTER, UpstreamResponse, UpstreamSaw,
};
use crate::{
    CalloutResponse, Error, HeaderMap, Host, HostBuilder, LogLevel, MetricValue, WasmModule,
};
use std::collections::BTreeMap;
use std::time::Duration;

impl Scenario {
    /// A host builder with this scenario's plugin and VM, and one cluster,
    /// [`UPSTREAM_CLUSTER`].
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
        Host::builder()
            .cluster(UPSTREAM_CLUSTER)
            .vm_id(&self.vm_id)
            .vm_config(self.vm_config_bytes())
            .plugin(&self.plugin_name(), &self.root_id, self.config_bytes())
    }

    /// Runs the scenario through `module` in a fresh host.
    ///
    /// # Errors
    ///
    /// The plugin does not start, or the guest traps.
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
    /// anything Envoy would refuse ([`Host::violations`]) is a failure too.
    ///
    /// # Errors
    ///
    /// The guest traps.
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
        let mut observed = Vec::new();
        for exchange in &self.requests {
            observed.push(play_exchange(host, exchange)?);
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
    /// The request headers, with the pseudo-headers' defaults.
    ///
    /// ```
    /// use sdk_host::scenario::Scenario;
    /// let scenario = Scenario::from_yaml("s.yaml", "filter: f.wasm\nrequests: [{headers: {\":path\": /a, X-Tag: t}}]\n")?;
    /// let headers = scenario.requests[0].request_headers();
    /// assert_eq!(headers[0], (":method".to_string(), "GET".to_string()));
    /// assert!(headers.contains(&(":path".to_string(), "/a".to_string())));
    /// assert_eq!(headers.last(), Some(&("x-tag".to_string(), "t".to_string())));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn request_headers(&self) -> Vec<(String, String)> {
        let mut headers: Vec<(String, String)> = [
            (":method", "GET"),
            (":path", "/"),
            (":authority", "example.com"),
            (":scheme", "http"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect();
        for (name, values) in &self.headers {
            let name = name.to_ascii_lowercase();
            headers.retain(|(n, _)| *n != name);
            headers.extend(values.values().iter().map(|v| (name.clone(), v.clone())));
        }
        // Pseudo-headers come first, as on the wire.
        headers.sort_by_key(|(n, _)| !n.starts_with(':'));
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

/// Plays one exchange: the request, the automatic passing of simulated
/// time while the filter holds it (delays, ticks), the upstream's answer.
fn play_exchange(host: &mut Host, exchange: &Exchange) -> Result<Observed, Error> {
    let started = host.elapsed();
    let stream = host.new_http_stream()?;
    let body = exchange.body.as_ref().map(Body::bytes);
    let mut headers = exchange.request_headers();
    if let Some(body) = &body {
        headers.push(("content-length".into(), body.len().to_string()));
    }
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
    wait_until(host, deadline, &response, request_done)?;
    let view = host.http(stream)?;
    let upstream = view.upstream().complete.then(|| {
        let headers = view.upstream().headers.clone().unwrap_or_default();
        let body = as_read(&headers, &view.upstream().body);
        UpstreamSaw { headers, body }
    });
    let answered_locally = view.local_response().is_some() || view.downstream().headers.is_some();
    if upstream.is_some() && !answered_locally && view.reset().is_none() {
        let mut pairs = vec![(":status".to_string(), response.status.to_string())];
        pairs.extend(response.headers.clone());
        let body = response.body.as_ref().map(Body::bytes);
        if let Some(body) = &body {
            pairs.push(("content-length".into(), body.len().to_string()));
        }
        host.send_response_headers(stream, &pairs, body.is_none())?;
        if let Some(body) = &body {
            host.send_response_body(stream, body, false)?;
            host.send_response_body(stream, [], true)?;
        }
    }
    wait_until(host, deadline, &response, |host| {
        host.http(stream).map_or(true, |view| {
            view.downstream().complete || view.reset().is_some()
        })
    })?;
    let view = host.http(stream)?;
    let downstream = view.downstream();
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
    };
    host.finish(stream)?;
    if let Some(advance) = exchange.advance {
        host.advance(advance)?;
    }
    Ok(observed)
}

/// Answers the filter's HTTP callouts with `answer` and lets simulated
/// time pass, one timer at a time, until `done` or the deadline.
fn wait_until(
    host: &mut Host,
    deadline: Duration,
    answer: &UpstreamResponse,
    done: impl Fn(&Host) -> bool,
) -> Result<(), Error> {
    loop {
        answer_callouts(host, answer)?;
        if done(host) {
            return Ok(());
        }
        match host.next_timer() {
            Some(due) if host.elapsed() + due <= deadline => host.advance(due)?,
            _ => return Ok(()),
        }
    }
}

/// Answers every pending callout, as the upstream would.
fn answer_callouts(host: &mut Host, answer: &UpstreamResponse) -> Result<(), Error> {
    while let Some(call) = host.http_calls().into_iter().next() {
        let mut response = CalloutResponse::new(answer.status);
        for (name, value) in &answer.headers {
            response = response.header(name, value);
        }
        if let Some(body) = &answer.body {
            let body = body.bytes();
            response = response
                .header("content-length", &body.len().to_string())
                .body(body);
        }
        host.respond_http_call(call.token, response)?;
    }
    Ok(())
}

/// The body as the peer reads it: no more than `content-length` says.
fn as_read(headers: &HeaderMap, body: &[u8]) -> Vec<u8> {
    let declared = headers
        .get("content-length")
        .and_then(|v| v.trim().parse::<usize>().ok());
    body[..declared.map_or(body.len(), |n| n.min(body.len()))].to_vec()
}
