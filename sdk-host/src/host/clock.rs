//! The manual clock: ticks, callout and gRPC timeouts, in time order.

use super::lifecycle::{ContextId, Host};
use crate::error::Error;
use crate::types::Callback;
use std::time::Duration;

impl Host {
    /// Moves the clock forward, firing every tick, callout timeout and gRPC
    /// timeout that falls due, each at its own time and in time order.
    ///
    /// # Errors
    ///
    /// [`Error::Trap`] from a callback.
    ///
    /// ```
    /// # let module = sdk_host::doc_support::pass_through()?;
    /// use std::time::Duration;
    /// let mut host = sdk_host::Host::builder().start(&module)?;
    /// host.advance(Duration::from_secs(2))?; // fires ticks and timeouts due meanwhile
    /// assert_eq!(host.elapsed(), Duration::from_secs(2));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn advance(&mut self, by: Duration) -> Result<(), Error> {
        let target = self
            .runtime
            .state_ref()
            .monotonic_nanos
            .saturating_add(by.as_nanos().min(u128::from(u64::MAX)) as u64);
        while let Some((due, event)) = self.next_event(target) {
            self.runtime.state().monotonic_nanos = due;
            match event {
                Timer::Tick(root) => {
                    let state = self.runtime.state();
                    if let Some(plugin) = state.plugin_of_root_mut(root) {
                        plugin.next_tick_nanos =
                            Some(due.saturating_add(u64::from(plugin.tick_period_ms) * 1_000_000));
                    }
                    self.invoke(Callback::Tick, root, &[root])?;
                }
                Timer::HttpTimeout(token) => self.http_call_timed_out(token)?,
                Timer::GrpcTimeout(token) => {
                    self.grpc_close(token, 4, "deadline exceeded")?;
                }
            }
            self.settle()?;
        }
        self.runtime.state().monotonic_nanos = target;
        Ok(())
    }

    fn next_event(&self, limit: u64) -> Option<(u64, Timer)> {
        let state = self.runtime.state_ref();
        let ticks = state.plugins.iter().filter(|p| !p.deleted).filter_map(|p| {
            p.next_tick_nanos
                .map(|due| (due, Timer::Tick(p.context_id)))
        });
        let http = state
            .http_calls
            .values()
            .filter(|c| c.timeout_ms > 0)
            .map(|c| {
                (
                    c.sent_nanos + u64::from(c.timeout_ms) * 1_000_000,
                    Timer::HttpTimeout(c.token),
                )
            });
        let grpc = state
            .grpc_calls
            .values()
            .filter(|c| !c.streaming && c.timeout_ms > 0)
            .map(|c| {
                (
                    c.sent_nanos + u64::from(c.timeout_ms) * 1_000_000,
                    Timer::GrpcTimeout(c.token),
                )
            });
        ticks
            .chain(http)
            .chain(grpc)
            .filter(|(due, _)| *due <= limit)
            .min_by_key(|(due, _)| *due)
    }

    /// How long until the next tick, callout timeout or gRPC timeout falls
    /// due, if any is set: advancing by it fires exactly that event.
    ///
    /// ```no_run
    /// # use sdk_host::{Host, WasmModule};
    /// # let module = WasmModule::from_file("filter.wasm")?;
    /// let mut host = Host::builder().start(&module)?;
    /// // Let the filter's timers run until none is left within a minute.
    /// while let Some(due) = host.next_timer().filter(|d| d.as_secs() < 60) {
    ///     host.advance(due)?;
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn next_timer(&self) -> Option<Duration> {
        let now = self.runtime.state_ref().monotonic_nanos;
        self.next_event(u64::MAX)
            .map(|(due, _)| Duration::from_nanos(due.saturating_sub(now)))
    }

    /// Time since the host started, on its monotonic clock.
    ///
    /// ```
    /// # let module = sdk_host::doc_support::pass_through()?;
    /// use std::time::Duration;
    /// let mut host = sdk_host::Host::builder().start(&module)?;
    /// host.advance(Duration::from_millis(150))?;
    /// assert_eq!(host.elapsed(), Duration::from_millis(150));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn elapsed(&self) -> Duration {
        Duration::from_nanos(self.runtime.state_ref().monotonic_nanos)
    }

    /// The tick period a plugin set, if any.
    ///
    /// ```
    /// # let module = sdk_host::doc_support::pass_through()?;
    /// let host = sdk_host::Host::builder().start(&module)?;
    /// // This module never calls proxy_set_tick_period_milliseconds.
    /// assert_eq!(host.tick_period(host.root_contexts()[0]), None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn tick_period(&self, root: ContextId) -> Option<Duration> {
        self.runtime
            .state_ref()
            .plugin_of_root(root)
            .filter(|p| p.tick_period_ms > 0)
            .map(|p| Duration::from_millis(u64::from(p.tick_period_ms)))
    }
}

/// Events the clock fires.
enum Timer {
    Tick(u32),
    HttpTimeout(u32),
    GrpcTimeout(u32),
}
