//! Request headers a meshwasm filter hands on, to Envoy's router or to a
//! later filter, which trust them. A client must never be able to send one
//! itself: not while the filter runs (it overwrites or removes them), and
//! not when the filter does not run at all (a module that failed to load or
//! trapped, under `fail_open` or Istio's `FAIL_OPEN`). So every deployment
//! removes them from each incoming request before any filter runs and
//! before Envoy picks a route: `envoyfilter` renders that removal into the
//! connection manager (Envoy's early header mutation) of every plain Envoy
//! bootstrap and every Istio mesh it writes.

/// Every header whose name starts with this is a meshwasm filter's own.
pub const PREFIX: &str = "x-meshwasm-";

/// The router headers of Envoy that the router filter sets for a route's
/// timeout and retries: Envoy's router obeys them, so a client must not.
pub const ENVOY_ROUTER_HEADERS: [&str; 5] = [
    crate::router::upstream::TIMEOUT_MS,
    crate::router::upstream::PER_TRY_TIMEOUT_MS,
    crate::router::upstream::MAX_RETRIES,
    crate::router::upstream::RETRY_ON,
    crate::router::upstream::RETRIABLE_STATUS_CODES,
];

/// The names to remove besides those starting with [`PREFIX`]: Envoy's
/// router headers, then the `extra` names (a router's configured cluster
/// and subset headers) that do not start with it, each once, in order.
///
/// # Examples
///
/// ```
/// use meshwasm_core::handoff::names_to_remove;
///
/// let names = names_to_remove(["x-meshwasm-cluster", "x-route-to", "x-route-to"]);
/// assert_eq!(names.len(), 6);
/// assert_eq!(names[0], "x-envoy-upstream-rq-timeout-ms");
/// assert_eq!(names[5], "x-route-to");
/// ```
pub fn names_to_remove<'a>(extra: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut names: Vec<String> = ENVOY_ROUTER_HEADERS
        .iter()
        .map(|h| (*h).to_owned())
        .collect();
    for name in extra {
        let name = name.to_ascii_lowercase();
        if !name.starts_with(PREFIX) && !names.contains(&name) {
            names.push(name);
        }
    }
    names
}
