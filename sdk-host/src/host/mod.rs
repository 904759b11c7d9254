//! The test API: a [`Host`] plays Envoy's part for one VM, calling the
//! guest's callbacks in Envoy's order with Envoy's buffering rules, and lets
//! a test read what came out. One file per domain: `builder` starts a
//! host, `lifecycle` calls into the guest as Envoy does; `http`, `tcp`,
//! `callouts` and `clock` drive it; `observe` reads it.

mod builder;
mod callouts;
mod clock;
mod http;
mod lifecycle;
mod observe;
mod tcp;

pub use lifecycle::{ContextId, Host, HostBuilder};
pub use observe::{HttpView, TcpView};
