//! The README's main command: the local demo runs every scenario, with the
//! Envoy files docker-compose runs too, and reports each as it expects.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

#[test]
fn the_local_demo_passes_every_scenario() {
    let out = Command::new(env!("CARGO_BIN_EXE_meshwasm-demo"))
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    let errors = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{report}\n{errors}");
    assert!(!report.contains("FAIL"), "{report}");
    // Every Istio example file was played, from its rendered Envoy file.
    for example in [
        "canary-split.yaml",
        "deny-admin.yaml",
        "fault-delay.yaml",
        "fault-jason-abort.yaml",
        "fault-jason-abort-v1alpha3.yaml",
        "gateway-prefixes-mirror.yaml",
        "header-routing.yaml",
        "mesh-bookinfo.yaml",
    ] {
        assert!(
            report.contains(&format!("\n{example}: ")),
            "{example} missing:\n{report}"
        );
    }
    // Every filter's own scenario files were played too.
    for dir in ["filters/fault/scenarios/", "filters/router/scenarios/"] {
        assert!(
            report.contains(&format!("\n{dir}: ")),
            "{dir} missing:\n{report}"
        );
    }
    let verdicts = report.lines().filter(|l| l.starts_with("  ok ")).count();
    assert!(verdicts >= 30, "{verdicts} checks reported:\n{report}");
}
