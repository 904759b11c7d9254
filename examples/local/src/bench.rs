//! Cost measurements of Envoy configurations, each reported against the
//! first one (the baseline) measured in the same run.
//!
//! - Instructions per request under `valgrind --tool=callgrind`:
//!   deterministic, so small differences are real.
//! - CPU time per request (utime + stime from /proc), with Envoy pinned to
//!   one core: closer to production, but varies by about 10 % on shared cores.

use crate::envoy::{Bootstrap, Envoy};
use anyhow::Result;
use std::future::Future;

/// One configuration to measure.
pub struct Case {
    /// Row label.
    pub name: String,
    /// The Envoy to start.
    pub bootstrap: Bootstrap,
}

impl Case {
    /// A labelled bootstrap.
    pub fn new(name: &str, bootstrap: Bootstrap) -> Self {
        Case {
            name: name.to_owned(),
            bootstrap,
        }
    }
}

/// True when valgrind can be run; otherwise says so.
pub fn have_valgrind() -> bool {
    let found = std::process::Command::new("valgrind")
        .arg("--version")
        .output()
        .is_ok();
    if !found {
        println!("instructions per request: skipped (valgrind is not installed)");
    }
    found
}

/// Prints instructions per request for each case: `traffic(envoy, n)` sends
/// `n` requests; 200 warm-up requests go first.
///
/// # Errors
///
/// Fails if Envoy does not start or traffic fails.
pub async fn instructions_per_request<F, Fut>(cases: Vec<Case>, n: usize, traffic: F) -> Result<()>
where
    F: Fn(&Envoy, usize) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    println!(
        "Envoy instructions per request (callgrind, {n} keep-alive requests after 200 to warm up)"
    );
    let mut baseline = None;
    for case in cases {
        let envoy = Envoy::start(case.bootstrap.under_callgrind()).await?;
        traffic(&envoy, 200).await?;
        let total = envoy.count_instructions(traffic(&envoy, n)).await?;
        let per_request = total as f64 / n as f64;
        let base = *baseline.get_or_insert(per_request);
        println!(
            "  {:<44} {:>7.0}k   {:>5.2}x baseline   {:>+6.0}k",
            case.name,
            per_request / 1e3,
            per_request / base,
            (per_request - base) / 1e3
        );
    }
    Ok(())
}

/// Prints Envoy CPU time per request for each case, Envoy pinned to CPU 1;
/// 10 % of `n` requests first let V8 tier up hot code.
///
/// # Errors
///
/// Fails if Envoy does not start or traffic fails.
pub async fn cpu_per_request<F, Fut>(cases: Vec<Case>, n: usize, traffic: F) -> Result<()>
where
    F: Fn(&Envoy, usize) -> Fut,
    Fut: Future<Output = Result<()>>,
{
    println!("Envoy CPU time per request ({n} requests, keep-alive, Envoy pinned to CPU 1)");
    let mut baseline = None;
    for case in cases {
        let envoy = Envoy::start(case.bootstrap.pin_to_cpu(1)).await?;
        traffic(&envoy, n / 10).await?;
        let before = envoy.cpu_time()?;
        traffic(&envoy, n).await?;
        let used = envoy.cpu_time()? - before;
        let per_request = used.as_secs_f64() * 1e6 / n as f64;
        let base = *baseline.get_or_insert(per_request);
        println!(
            "  {:<44} {per_request:>6.1} us   {:>5.2}x baseline   {:>+6.1} us",
            case.name,
            per_request / base,
            per_request - base
        );
    }
    Ok(())
}
