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

use meshwasm_abi::{
    HostRequest, HostSharedData, LocalReply, Log, Metric, entropy_seed, now_nanos, send_local_reply,
};
use meshwasm_core::delay_queue::{DelayQueue, Tick};
use meshwasm_core::fault::{ABORT_BODY, ABORT_DETAILS, Abort, FaultPlan};
use meshwasm_core::percent::Rng;
use meshwasm_core::shared_counter::{SharedCounter, fnv1a64};
use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

proxy_wasm::main! {{
    proxy_wasm::set_root_context(|context_id| Box::new(FaultRoot::new(context_id)));
}}

const LOG: Log = Log("meshwasm fault");

fn log(level: LogLevel, message: &str) {
    LOG.line(level, message);
}

/// Counters and the gauge, defined once per root context.
#[derive(Clone, Copy)]
struct Metrics {
    delays_injected: Metric,
    aborts_injected: Metric,
    faults_overflow: Metric,
    active_faults: Metric,
}

impl Metrics {
    fn define() -> Metrics {
        Metrics {
            delays_injected: Metric::counter("meshwasm.fault.delays_injected"),
            aborts_injected: Metric::counter("meshwasm.fault.aborts_injected"),
            faults_overflow: Metric::counter("meshwasm.fault.faults_overflow"),
            active_faults: Metric::gauge("meshwasm.fault.active_faults"),
        }
    }
}

/// Answers the current stream as Envoy's fault filter does: the status, the
/// body "fault filter abort", and for gRPC aborts the gRPC status, which
/// Envoy turns into a trailers-only `grpc-status` response for gRPC clients.
fn send_abort(abort: Abort) {
    let reply = LocalReply {
        status: abort.http_status(),
        details: ABORT_DETAILS,
        body: ABORT_BODY.as_bytes(),
        grpc_status: abort.grpc_status(),
    };
    if let Err(status) = send_local_reply(reply, []) {
        log(
            LogLevel::Error,
            &format!("local response for an abort failed: {status:?}"),
        );
    }
}

/// State shared by the root context and its streams (one VM, one thread).
struct Shared {
    root_context_id: u32,
    plan: RefCell<Option<Rc<FaultPlan>>>,
    limit: RefCell<Option<(SharedCounter, u64)>>,
    rng: RefCell<Rng>,
    delays: RefCell<DelayQueue<Option<Abort>>>,
    /// Streams holding an active-fault slot, with the counter they hold it in.
    slots: RefCell<HashMap<u32, Option<SharedCounter>>>,
    metrics: RefCell<Option<Metrics>>,
}

impl Shared {
    fn metric(&self, pick: impl Fn(&Metrics) -> Metric, offset: i64) {
        if let Some(m) = self.metrics.borrow().as_ref() {
            pick(m).add(offset);
        }
    }

    /// Takes an active-fault slot for the stream, unless `maxActiveFaults` is reached.
    fn acquire(&self, context_id: u32) -> bool {
        let limit = self.limit.borrow().clone();
        let held = match limit {
            None => None,
            Some((counter, max)) => match counter.try_increment_below(&HostSharedData, max) {
                Ok(true) => Some(counter),
                Ok(false) => {
                    self.metric(|m| m.faults_overflow, 1);
                    return false;
                }
                Err(e) => {
                    log(
                        LogLevel::Warn,
                        &format!("maxActiveFaults counter: {e}; fault skipped"),
                    );
                    self.metric(|m| m.faults_overflow, 1);
                    return false;
                }
            },
        };
        self.slots.borrow_mut().insert(context_id, held);
        self.metric(|m| m.active_faults, 1);
        true
    }

    fn release(&self, context_id: u32) {
        let Some(held) = self.slots.borrow_mut().remove(&context_id) else {
            return;
        };
        self.metric(|m| m.active_faults, -1);
        if let Some(Err(e)) = held.map(|counter| counter.decrement(&HostSharedData)) {
            log(LogLevel::Warn, &format!("maxActiveFaults counter: {e}"));
        }
    }

    fn schedule(&self, context_id: u32, delay: Duration, then: Option<Abort>) {
        let tick = self
            .delays
            .borrow_mut()
            .schedule(context_id, now_nanos(), delay, then);
        if let Some(tick) = tick {
            set_tick(tick);
        }
    }

    /// Resumes or aborts every stream whose delay is over, then re-arms the tick.
    fn wake_due(&self) {
        let due = self.delays.borrow_mut().take_due(now_nanos());
        for (context_id, then) in due {
            if hostcalls::set_effective_context(context_id).is_err() {
                self.release(context_id);
                continue;
            }
            match then {
                Some(abort) => {
                    self.metric(|m| m.aborts_injected, 1);
                    send_abort(abort);
                }
                None => {
                    // As in Envoy, a delay that is not followed by an abort
                    // stops counting as active once it is over.
                    self.release(context_id);
                    let _ = hostcalls::resume_http_request();
                }
            }
        }
        let _ = hostcalls::set_effective_context(self.root_context_id);
        let tick = self.delays.borrow_mut().rearm(now_nanos());
        set_tick(tick);
    }
}

fn set_tick(tick: Tick) {
    let period = match tick {
        Tick::Off => Duration::ZERO,
        Tick::After(period) => period,
    };
    let _ = hostcalls::set_tick_period(period);
}

struct FaultRoot {
    shared: Rc<Shared>,
}

impl FaultRoot {
    fn new(root_context_id: u32) -> Self {
        FaultRoot {
            shared: Rc::new(Shared {
                root_context_id,
                plan: RefCell::new(None),
                limit: RefCell::new(None),
                rng: RefCell::new(Rng::with_seed(0)),
                delays: RefCell::new(DelayQueue::default()),
                slots: RefCell::new(HashMap::new()),
                metrics: RefCell::new(None),
            }),
        }
    }

    fn configure(&self, config: &[u8]) -> Result<(), String> {
        let plan =
            FaultPlan::from_json(config).map_err(|e| format!("invalid configuration: {e}"))?;
        for note in plan.notes() {
            log(LogLevel::Warn, &note.to_string());
        }
        let limit = plan.max_active_faults().map(|max| {
            // Keyed by root id and configuration: a new configuration starts
            // its own count rather than inherit one that may be stale.
            let root_id = hostcalls::get_property(vec!["plugin_root_id"])
                .ok()
                .flatten()
                .unwrap_or_default();
            let key = format!(
                "meshwasm.fault.active.{}.{:016x}",
                String::from_utf8_lossy(&root_id),
                fnv1a64(config)
            );
            let counter = SharedCounter::new(key);
            if let Err(e) = counter.ensure_exists(&HostSharedData) {
                log(LogLevel::Warn, &format!("maxActiveFaults counter: {e}"));
            }
            (counter, max)
        });
        log(LogLevel::Info, &format!("configured: {}", plan.summary()));
        *self.shared.limit.borrow_mut() = limit;
        *self.shared.plan.borrow_mut() = Some(Rc::new(plan));
        Ok(())
    }
}

impl Context for FaultRoot {}

impl RootContext for FaultRoot {
    fn on_vm_start(&mut self, _vm_configuration_size: usize) -> bool {
        *self.shared.rng.borrow_mut() = Rng::with_seed(entropy_seed(LOG));
        true
    }

    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        if self.shared.metrics.borrow().is_none() {
            *self.shared.metrics.borrow_mut() = Some(Metrics::define());
        }
        let config = self.get_plugin_configuration().unwrap_or_default();
        match self.configure(&config) {
            Ok(()) => true,
            Err(message) => {
                log(LogLevel::Error, &message);
                false
            }
        }
    }

    fn on_tick(&mut self) {
        self.shared.wake_due();
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(FaultStream {
            context_id,
            shared: Rc::clone(&self.shared),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct FaultStream {
    context_id: u32,
    shared: Rc<Shared>,
}

impl FaultStream {
    fn is_delayed(&self) -> bool {
        self.shared.delays.borrow().contains(self.context_id)
    }
}

impl Context for FaultStream {}

impl HttpContext for FaultStream {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let Some(plan) = self.shared.plan.borrow().clone() else {
            return Action::Continue;
        };
        let decision = plan.decide(
            &mut HostRequest::new(LOG),
            &mut self.shared.rng.borrow_mut(),
        );
        if decision.is_none() || !self.shared.acquire(self.context_id) {
            return Action::Continue;
        }
        if let Some(delay) = decision.delay {
            self.shared.metric(|m| m.delays_injected, 1);
            self.shared.schedule(self.context_id, delay, decision.abort);
            return Action::Pause;
        }
        if let Some(abort) = decision.abort {
            self.shared.metric(|m| m.aborts_injected, 1);
            send_abort(abort);
            return Action::Pause;
        }
        Action::Continue
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
        self.shared.delays.borrow_mut().cancel(self.context_id);
        self.shared.release(self.context_id);
    }
}
