//! Fault decisions for the Istio documentation's scenarios and Envoy's header faults.

use crate::request;
use meshwasm_core::fault::{Abort, FaultDecision, FaultPlan};
use meshwasm_core::percent::Rng;
use meshwasm_core::plan::Plan;
use std::time::Duration;
use wasm_bindgen_test::wasm_bindgen_test;

const JASON_ABORT: &str = r#"{"hosts": ["ratings"], "http": [
  {"match": [{"headers": {"cookie": {"regex": "^(.*?;)?(user=jason)(;.*)?$"}}}],
   "fault": {"abort": {"percentage": {"value": 100}, "httpStatus": 500}},
   "route": [{"destination": {"host": "ratings", "subset": "v1"}}]},
  {"route": [{"destination": {"host": "ratings", "subset": "v1"}}]}]}"#;

const DETAILS_FLAKY: &str = r#"{"hosts": ["details"], "http": [
  {"match": [{"uri": {"prefix": "/flaky"}}],
   "fault": {"delay": {"percentage": {"value": 0.1}, "fixedDelay": "5s"},
             "abort": {"httpStatus": 500, "percentage": {"value": 50.0}}},
   "route": [{"destination": {"host": "details", "subset": "v1"}}]},
  {"route": [{"destination": {"host": "details", "subset": "v1"}}],
   "timeout": "10s", "retries": {"attempts": 3, "perTryTimeout": "2s"}}]}"#;

fn plan(json: &str) -> FaultPlan {
    FaultPlan::from_json(json.as_bytes()).unwrap()
}

#[wasm_bindgen_test(unsupported = test)]
fn jason_gets_500_and_everyone_else_passes() {
    let plan = plan(JASON_ABORT);
    let mut rng = Rng::with_seed(1);
    for cookie in ["user=jason", "user=jason; theme=dark", "a=b;user=jason"] {
        let mut req = request("ratings:9080", "/ratings/0").with_header("cookie", cookie);
        assert_eq!(
            plan.decide(&mut req, &mut rng).abort,
            Some(Abort::Http(500)),
            "{cookie}"
        );
    }
    for cookie in ["user=kim", "user=jasonx", "theme=dark; user=jason"] {
        let mut req = request("ratings", "/").with_header("cookie", cookie);
        assert!(plan.decide(&mut req, &mut rng).is_none(), "{cookie}");
    }
    assert!(
        plan.decide(&mut request("ratings", "/"), &mut rng)
            .is_none()
    );
    let mut other_host = request("reviews", "/").with_header("cookie", "user=jason");
    assert!(
        plan.decide(&mut other_host, &mut rng).is_none(),
        "hosts: [ratings] only"
    );
}

#[wasm_bindgen_test(unsupported = test)]
fn legacy_integer_percent_delays_everyone() {
    let plan = plan(
        r#"{"hosts": ["ratings"], "http": [{"fault": {"delay": {"percent": 100, "fixedDelay": "2s"}},
            "route": [{"destination": {"host": "ratings", "subset": "v1"}}]}]}"#,
    );
    let mut rng = Rng::with_seed(2);
    let d = plan.decide(&mut request("ratings", "/"), &mut rng);
    assert_eq!(
        d,
        FaultDecision {
            delay: Some(Duration::from_secs(2)),
            abort: None
        }
    );
}

/// The jason abort as the v1alpha3 write-ups give it: the abort's legacy
/// integer `percent`, which users still paste.
#[wasm_bindgen_test(unsupported = test)]
fn legacy_integer_percent_aborts_as_percentage_does_with_a_deprecation_note() {
    let legacy = r#"{"hosts": ["ratings"], "http": [{"match": [{"headers": {"cookie": {"regex": "^(.*?;)?(user=jason)(;.*)?$"}}}],
        "fault": {"abort": {"percent": 100, "httpStatus": 500}},
        "route": [{"destination": {"host": "ratings", "subset": "v1"}}]}]}"#;
    let every = plan(legacy);
    let mut rng = Rng::with_seed(2);
    let jason = request("ratings", "/").with_header("cookie", "user=jason");
    assert_eq!(
        every.decide(&mut jason.clone(), &mut rng).abort,
        Some(Abort::Http(500))
    );
    assert!(
        every
            .decide(&mut request("ratings", "/"), &mut rng)
            .is_none()
    );
    let notes: Vec<String> = every.notes().iter().map(ToString::to_string).collect();
    assert_eq!(
        notes,
        [
            "http[0].fault.abort.percent: the integer percent is deprecated (v1alpha3); write percentage: {value: N}"
        ]
    );
    // Half of the requests, as percent: 50 says.
    let half = plan(&legacy.replace("\"percent\": 100", "\"percent\": 50"));
    let aborted = (0..10_000)
        .filter(|_| half.decide(&mut jason.clone(), &mut rng).abort.is_some())
        .count();
    assert!((4_700..=5_300).contains(&aborted), "{aborted}");
}

#[wasm_bindgen_test(unsupported = test)]
fn delay_and_abort_are_drawn_independently() {
    let plan = plan(DETAILS_FLAKY);
    let mut rng = Rng::with_seed(3);
    let n = 200_000;
    let (mut delays, mut aborts, mut both) = (0, 0, 0);
    for _ in 0..n {
        let d = plan.decide(&mut request("details", "/flaky"), &mut rng);
        delays += usize::from(d.delay.is_some());
        aborts += usize::from(d.abort.is_some());
        both += usize::from(d.delay.is_some() && d.abort.is_some());
    }
    // Binomial bounds at about 6 standard deviations.
    assert!((120..=280).contains(&delays), "0.1 % delays: {delays}");
    assert!(
        (98_660..=101_340).contains(&aborts),
        "50 % aborts: {aborts}"
    );
    assert!((40..=170).contains(&both), "delay then abort: {both}");
    assert!(
        plan.decide(&mut request("details", "/details/1"), &mut rng)
            .is_none()
    );
}

#[wasm_bindgen_test(unsupported = test)]
fn grpc_abort_answers_http_200_with_the_grpc_code() {
    let plan = plan(
        r#"{"hosts": ["*"], "http": [{"fault": {"abort": {"grpcStatus": "UNAVAILABLE", "percentage": {"value": 100}}}}]}"#,
    );
    let abort = plan
        .decide(&mut request("x", "/"), &mut Rng::with_seed(4))
        .abort
        .unwrap();
    assert_eq!(abort, Abort::Grpc(14));
    assert_eq!((abort.http_status(), abort.grpc_status()), (200, Some(14)));
}

const HEADER_FAULTS: &str = r#"{"hosts": ["*"], "http": [
  {"match": [{"uri": {"prefix": "/configured"}}], "fault": {"abort": {"httpStatus": 503, "percentage": {"value": 100}}}},
  {"route": [{"destination": {"host": "web"}}]}],
  "meshwasm": {"fault": {"headerFaults": {"abort": {"percentage": {"value": 50}}, "delay": {}}}}}"#;

#[wasm_bindgen_test(unsupported = test)]
fn header_faults_follow_envoy() {
    let plan = plan(HEADER_FAULTS);
    let mut rng = Rng::with_seed(5);
    let mut decide = |req: &mut meshwasm_core::request::StaticRequest| plan.decide(req, &mut rng);

    let d = decide(&mut request("a", "/").with_header("x-envoy-fault-delay-request", "250"));
    assert_eq!(d.delay, Some(Duration::from_millis(250)));
    // Envoy: zero, garbage and negative delays are no delay; first value only.
    for v in ["0", "abc", "-5", "1.5"] {
        assert!(
            decide(&mut request("a", "/").with_header("x-envoy-fault-delay-request", v)).is_none(),
            "{v}"
        );
    }
    let d = decide(
        &mut request("a", "/")
            .with_header("x-envoy-fault-delay-request", " 7 ")
            .with_header("x-envoy-fault-delay-request", "9"),
    );
    assert_eq!(d.delay, Some(Duration::from_millis(7)));

    // HTTP status wins over gRPC; out-of-range statuses are ignored, gRPC codes are not range-checked.
    let both = || {
        request("a", "/")
            .with_header("x-envoy-fault-abort-request", "418")
            .with_header("x-envoy-fault-abort-grpc-request", "4")
            .with_header("x-envoy-fault-abort-request-percentage", "100")
    };
    let hits = (0..4000)
        .filter(|_| decide(&mut both()).abort == Some(Abort::Http(418)))
        .count();
    // The configured 50 % caps the header's 100 %.
    assert!((1800..=2200).contains(&hits), "capped at 50 %: {hits}");
    let low = || both().set_header("x-envoy-fault-abort-request-percentage", "10");
    let hits = (0..4000)
        .filter(|_| decide(&mut low()).abort.is_some())
        .count();
    assert!((300..=500).contains(&hits), "lowered to 10 %: {hits}");
    let grpc = || {
        request("a", "/")
            .with_header("x-envoy-fault-abort-request", "600")
            .with_header("x-envoy-fault-abort-grpc-request", "99")
            .with_header("x-envoy-fault-abort-request-percentage", "100")
    };
    assert!((0..200).any(|_| decide(&mut grpc()).abort == Some(Abort::Grpc(99))));
    assert!((0..200).all(|_| decide(&mut grpc()).abort != Some(Abort::Http(600))));
}

#[wasm_bindgen_test(unsupported = test)]
fn a_route_fault_replaces_header_faults_and_headers_are_off_by_default() {
    let plan_with = plan(HEADER_FAULTS);
    let mut rng = Rng::with_seed(6);
    let mut req = request("a", "/configured").with_header("x-envoy-fault-delay-request", "100");
    assert_eq!(
        plan_with.decide(&mut req, &mut rng),
        FaultDecision {
            delay: None,
            abort: Some(Abort::Http(503))
        }
    );

    let plan_without = plan(JASON_ABORT);
    let mut req = request("ratings", "/").with_header("x-envoy-fault-abort-request", "500");
    assert!(
        plan_without.decide(&mut req, &mut rng).is_none(),
        "header faults are opt-in"
    );
}

#[wasm_bindgen_test(unsupported = test)]
fn max_active_faults_and_summary() {
    let plan = plan(r#"{"hosts": ["*"], "meshwasm": {"fault": {"maxActiveFaults": 3}}}"#);
    assert_eq!(plan.max_active_faults(), Some(3));
    assert_eq!(
        plan.summary(),
        "0 http routes, 0 with faults; header faults: off; maxActiveFaults: 3"
    );
}

/// fault-delay.yaml's two VirtualServices in one filter: each host gets
/// its own faults, and `meshwasm.fault` may be set once for the filter.
#[wasm_bindgen_test(unsupported = test)]
fn a_list_applies_each_hosts_own_faults() {
    let both = format!(r#"{{"virtualServices": [{JASON_ABORT}, {DETAILS_FLAKY}]}}"#);
    let plan = plan(&both);
    let mut rng = Rng::with_seed(7);
    let mut jason = request("ratings", "/").with_header("cookie", "user=jason");
    assert_eq!(
        plan.decide(&mut jason, &mut rng).abort,
        Some(Abort::Http(500))
    );
    let mut details_jason = request("details", "/").with_header("cookie", "user=jason");
    assert!(plan.decide(&mut details_jason, &mut rng).is_none());
    let aborted = (0..2000)
        .filter(|_| {
            plan.decide(&mut request("details", "/flaky"), &mut rng)
                .abort
                .is_some()
        })
        .count();
    assert!(
        (850..1150).contains(&aborted),
        "{aborted} of 2000 aborted at 50 %"
    );

    let twice = r#"{"virtualServices": [{"hosts": ["a"], "meshwasm": {"fault": {"maxActiveFaults": 1}}},
                   {"hosts": ["b"], "meshwasm": {"fault": {"maxActiveFaults": 2}}}]}"#;
    let err = FaultPlan::from_json(twice.as_bytes()).unwrap_err();
    assert_eq!(err.path, "virtualServices[1].meshwasm.fault");
}
