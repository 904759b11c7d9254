//! Every hostcall of ABI 0.2.1, driven by the probe's scripts, with the
//! answers Envoy gives; each test runs in every mode this build has. One
//! file per ABI domain, as in `src/hostcalls`.

mod callouts;
mod http;
mod state;
mod vm;

use sdk_host::Host;

pub(crate) const GET: [(&str, &str); 3] = [
    (":method", "GET"),
    (":path", "/a/b?x=1"),
    (":authority", "shop"),
];

pub(crate) fn violations(host: &Host) -> Vec<String> {
    host.violations().iter().map(ToString::to_string).collect()
}
