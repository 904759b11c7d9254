//! meshwasm fault filter: Istio's `HTTPFaultInjection` as a Proxy-Wasm filter.
//!
//! The configuration is a VirtualService spec. For each request the filter
//! asks `meshwasm_core::fault::FaultPlan` what to do, then does it:
//! - a delay pauses the request and a root-context tick resumes it (the
//!   worker never blocks);
//! - an abort answers with a local response, as Envoy's fault filter does;
//! - `maxActiveFaults` is a compare-and-swap counter in shared data, so the
//!   limit holds across Envoy's worker threads.
//!
//! Metrics: `meshwasm.fault.delays_injected`, `meshwasm.fault.aborts_injected`,
//! `meshwasm.fault.faults_overflow` (counters) and `meshwasm.fault.active_faults` (gauge).

use meshwasm_core::delay_queue::{DelayQueue, Tick};
use meshwasm_core::fault::{ABORT_BODY, ABORT_DETAILS, Abort, FaultPlan, metric};
use meshwasm_core::properties::attributes;
use meshwasm_core::shared_counter::{SharedCounter, fnv1a64};
use meshwasm_plugin::headers::HostRequest;
use meshwasm_plugin::host::{HostProperties, HostSharedData, now_nanos, set_tick};
use meshwasm_plugin::reply::{LocalReply, send_local_reply};
use meshwasm_plugin::{Filter, Log, Metrics, Plugin, Setup};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, LogLevel};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

/// The filter's state for the whole VM: the delayed streams and the
/// streams holding an active-fault slot.
#[derive(Default)]
pub struct Fault {
    delays: RefCell<DelayQueue<Delayed>>,
    slots: RefCell<HashMap<u32, Slot>>,
}

/// The configuration in force.
pub struct Configured {
    plan: FaultPlan,
    /// The `maxActiveFaults` counter and its limit.
    limit: Option<(SharedCounter, u64)>,
    metrics: Metrics,
}

/// A delayed stream: what follows the delay, under the configuration it
/// started with.
struct Delayed {
    then: Option<Abort>,
    config: Rc<Configured>,
}

/// An active-fault slot: the counter it is held in, if limited.
struct Slot {
    counter: Option<SharedCounter>,
    config: Rc<Configured>,
}

impl Filter for Fault {
    const NAME: &'static str = "meshwasm fault";
    type Plan = FaultPlan;
    type Config = Configured;
    type Stream = FaultStream;

    fn configure(plugin: &Plugin<Self>, plan: FaultPlan, setup: Setup<'_>) -> Configured {
        let limit = plan.max_active_faults().map(|max| {
            // Keyed by root id and configuration: a new configuration starts
            // its own count rather than inherit one that may be stale.
            let root_id = attributes::PLUGIN_ROOT_ID
                .read(&mut HostProperties)
                .unwrap_or_default();
            let counter = SharedCounter::new(format!(
                "meshwasm.fault.active.{root_id}.{:016x}",
                fnv1a64(setup.raw)
            ));
            if let Err(e) = counter.ensure_exists(&HostSharedData) {
                plugin
                    .log()
                    .line(LogLevel::Warn, &format!("maxActiveFaults counter: {e}"));
            }
            (counter, max)
        });
        Configured {
            plan,
            limit,
            metrics: setup.metrics,
        }
    }

    fn stream(plugin: &Rc<Plugin<Self>>, config: Rc<Configured>, context_id: u32) -> FaultStream {
        FaultStream {
            context_id,
            plugin: Rc::clone(plugin),
            config,
        }
    }

    /// Resumes or aborts every stream whose delay is over, then re-arms the tick.
    fn on_tick(plugin: &Plugin<Self>) {
        let due = plugin.delays.borrow_mut().take_due(now_nanos());
        for (context_id, delayed) in due {
            if hostcalls::set_effective_context(context_id).is_err() {
                plugin.release(context_id);
                continue;
            }
            match delayed.then {
                Some(abort) => {
                    delayed.config.metrics.add(metric::ABORTS_INJECTED, 1);
                    send_abort(plugin.log(), abort);
                }
                None => {
                    // As in Envoy, a delay that is not followed by an abort
                    // stops counting as active once it is over.
                    plugin.release(context_id);
                    let _ = hostcalls::resume_http_request();
                }
            }
        }
        let _ = hostcalls::set_effective_context(plugin.root_context_id());
        let tick = plugin.delays.borrow_mut().rearm(now_nanos());
        arm(tick);
    }
}

impl Fault {
    /// Takes an active-fault slot for the stream, unless `maxActiveFaults` is reached.
    fn acquire(&self, log: Log, context_id: u32, config: &Rc<Configured>) -> bool {
        let counter = match &config.limit {
            None => None,
            Some((counter, max)) => match counter.try_increment_below(&HostSharedData, *max) {
                Ok(true) => Some(counter.clone()),
                Ok(false) => {
                    config.metrics.add(metric::FAULTS_OVERFLOW, 1);
                    return false;
                }
                Err(e) => {
                    log.line(
                        LogLevel::Warn,
                        &format!("maxActiveFaults counter: {e}; fault skipped"),
                    );
                    config.metrics.add(metric::FAULTS_OVERFLOW, 1);
                    return false;
                }
            },
        };
        let slot = Slot {
            counter,
            config: Rc::clone(config),
        };
        self.slots.borrow_mut().insert(context_id, slot);
        config.metrics.add(metric::ACTIVE_FAULTS, 1);
        true
    }

    fn release(&self, context_id: u32) {
        let Some(slot) = self.slots.borrow_mut().remove(&context_id) else {
            return;
        };
        slot.config.metrics.add(metric::ACTIVE_FAULTS, -1);
        if let Some(Err(e)) = slot.counter.map(|c| c.decrement(&HostSharedData)) {
            Log(Self::NAME).line(LogLevel::Warn, &format!("maxActiveFaults counter: {e}"));
        }
    }

    fn schedule(&self, context_id: u32, delay: Duration, delayed: Delayed) {
        let tick = self
            .delays
            .borrow_mut()
            .schedule(context_id, now_nanos(), delay, delayed);
        if let Some(tick) = tick {
            arm(tick);
        }
    }
}

/// Sets the root's tick as the delay queue asks.
fn arm(tick: Tick) {
    let period = match tick {
        Tick::Off => None,
        Tick::After(period) => Some(period),
    };
    set_tick(Fault::NAME, period);
}

/// Answers the current stream as Envoy's fault filter does: the status, the
/// body "fault filter abort", and for gRPC aborts the gRPC status, which
/// Envoy turns into a trailers-only `grpc-status` response for gRPC clients.
fn send_abort(log: Log, abort: Abort) {
    let reply = LocalReply {
        status: abort.http_status(),
        details: ABORT_DETAILS,
        body: ABORT_BODY.as_bytes(),
        grpc_status: abort.grpc_status(),
    };
    if let Err(status) = send_local_reply(reply, []) {
        log.line(
            LogLevel::Error,
            &format!("local response for an abort failed: {status:?}"),
        );
    }
}

/// One request.
pub struct FaultStream {
    context_id: u32,
    plugin: Rc<Plugin<Fault>>,
    config: Rc<Configured>,
}

impl FaultStream {
    /// Whether the request is held for a delay, which the root's tick ends.
    pub fn is_delayed(&self) -> bool {
        self.plugin.delays.borrow().contains(self.context_id)
    }

    /// Injects the fault the request draws, if any: `Pause` when it is
    /// delayed (see [`is_delayed`](Self::is_delayed)) or aborted.
    pub fn request_headers(&mut self, req: &mut HostRequest) -> Action {
        let log = self.plugin.log();
        let decision = self.config.plan.decide(req, &mut self.plugin.rng());
        if decision.is_none() || !self.plugin.acquire(log, self.context_id, &self.config) {
            return Action::Continue;
        }
        if let Some(delay) = decision.delay {
            self.config.metrics.add(metric::DELAYS_INJECTED, 1);
            let delayed = Delayed {
                then: decision.abort,
                config: Rc::clone(&self.config),
            };
            self.plugin.schedule(self.context_id, delay, delayed);
            return Action::Pause;
        }
        if let Some(abort) = decision.abort {
            self.config.metrics.add(metric::ABORTS_INJECTED, 1);
            send_abort(log, abort);
            return Action::Pause;
        }
        Action::Continue
    }
}

impl Context for FaultStream {}

impl HttpContext for FaultStream {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        self.request_headers(&mut HostRequest::new(self.plugin.log()))
    }

    // While delayed, body and trailers wait too. Envoy 1.40 does not call
    // these while the headers are paused (the end-to-end body test passes
    // either way); a host that did call them would otherwise forward the
    // request before the delay is over.
    fn on_http_request_body(&mut self, _body_size: usize, _end_of_stream: bool) -> Action {
        if self.is_delayed() {
            Action::Pause
        } else {
            Action::Continue
        }
    }

    fn on_http_request_trailers(&mut self, _num_trailers: usize) -> Action {
        if self.is_delayed() {
            Action::Pause
        } else {
            Action::Continue
        }
    }
}

impl Drop for FaultStream {
    fn drop(&mut self) {
        // The stream ended (or was reset) while delayed or holding a slot.
        self.plugin.delays.borrow_mut().cancel(self.context_id);
        self.plugin.release(self.context_id);
    }
}
