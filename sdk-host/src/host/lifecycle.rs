//! A [`Host`] and its [`HostBuilder`] (whose methods are in `builder`),
//! and a host's life: starting its plugins, calling into the guest as
//! Envoy does, settling what a call deferred, and shutting down.

use crate::error::Error;
use crate::model::{ContextKind, Deferred, ForeignFunction, Plugin, VmSettings};
use crate::properties::{PropertyPath, PropertyValue};
use crate::proxy::Proxy;
use crate::runtime::Runtime;
use crate::types::Callback;

/// A context id, as the guest sees it.
///
/// ```
/// # let module = sdk_host::doc_support::pass_through()?;
/// let mut host = sdk_host::Host::builder().start(&module)?;
/// let root: sdk_host::ContextId = host.root_contexts()[0];
/// let stream: sdk_host::ContextId = host.new_http_stream()?;
/// assert_ne!(root, stream);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub type ContextId = u32;

/// One Envoy-like VM running a guest, with its plugins and streams.
///
/// Every method that reaches the guest returns what the guest decided
/// and leaves the effects in the host for the test to read: the headers
/// after the filter ([`HttpView::request_headers`]), what went upstream
/// ([`HttpView::upstream`]), local responses, logs, metrics, callouts.
///
/// # Examples
///
/// ```no_run
/// use sdk_host::{Action, Host, WasmModule};
/// let module = WasmModule::from_file("filter.wasm")?;
/// let mut host = Host::builder().plugin_config("{}").start(&module)?;
/// let stream = host.new_http_stream()?;
/// let action = host.send_request_headers(stream, &[(":method", "GET"), (":path", "/")], true)?;
/// assert_eq!(action, Action::Continue);
/// assert!(host.http(stream)?.upstream().headers.is_some());
/// host.finish(stream)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Host {
    pub(super) runtime: Box<dyn Runtime>,
    pub(super) failed: Option<String>,
    pub(super) next_context: u32,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.runtime.state_ref();
        f.debug_struct("Host")
            .field("vm_id", &state.settings.vm_id)
            .field("root_contexts", &self.root_contexts())
            .field("http_streams", &state.http.len())
            .field("failed", &self.failed)
            .finish()
    }
}

impl Host {
    pub(super) fn start(
        runtime: Box<dyn Runtime>,
        mut plugins: Vec<PluginSpec>,
        default_config: Vec<u8>,
        first_context: u32,
    ) -> Result<Host, Error> {
        let mut host = Host {
            runtime,
            failed: None,
            next_context: first_context,
        };
        if plugins.is_empty() {
            plugins.push(PluginSpec {
                name: "plugin".to_string(),
                root_id: String::new(),
                config: default_config,
            });
        }
        host.runtime.state().callback = Some(Callback::Initialize);
        let started = host.runtime.initialize();
        host.runtime.state().callback = None;
        started?;
        for spec in plugins {
            host.start_plugin(spec)?;
        }
        host.settle()?;
        Ok(host)
    }

    pub(super) fn next_context_id(&mut self) -> u32 {
        let id = self.next_context;
        self.next_context += 1;
        id
    }

    pub(super) fn start_plugin(&mut self, spec: PluginSpec) -> Result<(), Error> {
        let root = self.next_context_id();
        let name = spec.name.clone();
        {
            let state = self.runtime.state();
            state.contexts.insert(root, ContextKind::Root);
            state.plugins.push(Plugin {
                name: spec.name,
                root_id: spec.root_id,
                config: spec.config,
                context_id: root,
                tick_period_ms: 0,
                next_tick_nanos: None,
                done_pending: false,
                deleted: false,
            });
        }
        let logs_before = self.runtime.state_ref().logs.len();
        self.invoke(Callback::ContextCreate, root, &[root, 0])?;
        let vm_config_size = self.runtime.state_ref().settings.vm_config.len() as u32;
        let started = self.invoke(Callback::VmStart, root, &[root, vm_config_size])?;
        if started == Some(0) {
            return Err(self.rejected(Callback::VmStart, name, logs_before));
        }
        let config_size = self
            .runtime
            .state_ref()
            .plugin_of_root(root)
            .map_or(0, |p| p.config.len() as u32);
        let configured = self.invoke(Callback::Configure, root, &[root, config_size])?;
        if configured == Some(0) {
            return Err(self.rejected(Callback::Configure, name, logs_before));
        }
        Ok(())
    }

    pub(super) fn rejected(&self, callback: Callback, plugin: String, logs_before: usize) -> Error {
        Error::Rejected {
            callback: callback.export_name(),
            plugin,
            logs: self.runtime.state_ref().logs[logs_before..].to_vec(),
        }
    }

    /// Calls one export in `context`, as Envoy does: the effective context
    /// is the callee's until the guest changes it, and is reset after.
    pub(super) fn invoke(
        &mut self,
        callback: Callback,
        context: u32,
        args: &[u32],
    ) -> Result<Option<u32>, Error> {
        if let Some(reason) = &self.failed {
            return Err(Error::VmFailed(reason.clone()));
        }
        let logged_before = {
            let state = self.runtime.state();
            state.effective = context;
            state.callback = Some(callback);
            state.call_output.clear();
            state.call_output_logs.clear();
            state.logs.len()
        };
        let result = self.runtime.call(callback, args);
        let state = self.runtime.state();
        state.callback = None;
        state.callback_data = Default::default();
        state.effective = 0;
        match result {
            Ok(value) => Ok(value),
            Err(trap) => {
                let trap = trap.with_guest_output(
                    &state.logs,
                    logged_before,
                    &state.call_output_logs,
                    &state.call_output,
                );
                self.failed = Some(trap.summary());
                Err(Error::Trap(trap))
            }
        }
    }

    /// Runs what the guest's calls deferred until the VM call returned:
    /// resumed streams, local responses, queue notifications.
    pub(super) fn settle(&mut self) -> Result<(), Error> {
        loop {
            let id = self.runtime.state_ref().id;
            let notices = self.runtime.state_ref().proxy.take_queue_notices(id);
            let state = self.runtime.state();
            for (root, token) in notices {
                state.deferred.push(Deferred::QueueReady { root, token });
            }
            if state.deferred.is_empty() {
                return Ok(());
            }
            let next = state.deferred.remove(0);
            match next {
                Deferred::Continue(context, kind) => self.resume(context, kind)?,
                Deferred::LocalResponse(context) => self.local_response(context)?,
                Deferred::DeleteRoot(root) => self.delete_root(root)?,
                Deferred::QueueReady { root, token } => {
                    if self.runtime.state_ref().contexts.contains_key(&root) {
                        self.invoke(Callback::QueueReady, root, &[root, token])?;
                    }
                }
            }
        }
    }

    /// The root context ids, one per plugin, in the order they were added.
    ///
    /// ```
    /// # let module = sdk_host::doc_support::pass_through()?;
    /// let host = sdk_host::Host::builder().plugin("a", "", "").plugin("b", "", "").start(&module)?;
    /// assert_eq!(host.root_contexts().len(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn root_contexts(&self) -> Vec<ContextId> {
        self.runtime
            .state_ref()
            .plugins
            .iter()
            .map(|p| p.context_id)
            .collect()
    }

    /// Calls the guest's `proxy_on_foreign_function` in a root context; the
    /// guest reads `data` as the `CallData` buffer.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] for an unknown root, [`Error::Trap`].
    ///
    /// ```no_run
    /// # let module = sdk_host::WasmModule::from_file("filter.wasm")?;
    /// let mut host = sdk_host::Host::builder().start(&module)?;
    /// let root = host.root_contexts()[0];
    /// host.call_guest_foreign_function(root, 1, b"reload")?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn call_guest_foreign_function(
        &mut self,
        root: ContextId,
        function_id: u32,
        data: impl AsRef<[u8]>,
    ) -> Result<(), Error> {
        if self.runtime.state_ref().plugin_of_root(root).is_none() {
            return Err(Error::NotFound {
                kind: "plugin root context",
                id: root,
            });
        }
        let data = data.as_ref().to_vec();
        let size = data.len() as u32;
        self.runtime.state().callback_data.call_data = Some(data);
        self.invoke(Callback::ForeignFunction, root, &[root, function_id, size])?;
        self.settle()
    }

    /// Shuts the plugins down as Envoy does when a configuration is removed:
    /// `proxy_on_done` on each root context, and `proxy_on_delete` once it
    /// is done (at once, or when it calls `proxy_done`). Returns the roots
    /// still waiting for `proxy_done`.
    ///
    /// # Errors
    ///
    /// [`Error::Trap`].
    ///
    /// ```
    /// # let module = sdk_host::doc_support::pass_through()?;
    /// let mut host = sdk_host::Host::builder().start(&module)?;
    /// // Roots whose proxy_on_done returned false are still finishing work.
    /// let waiting = host.shutdown()?;
    /// assert_eq!(waiting, host.pending_done());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn shutdown(&mut self) -> Result<Vec<ContextId>, Error> {
        let roots = self.root_contexts();
        let mut waiting = Vec::new();
        for root in roots {
            let plugin_deleted = self
                .runtime
                .state_ref()
                .plugin_of_root(root)
                .is_some_and(|p| p.deleted);
            if plugin_deleted {
                continue;
            }
            let done = self.invoke(Callback::Done, root, &[root])?;
            if done == Some(0) {
                if let Some(plugin) = self.runtime.state().plugin_of_root_mut(root) {
                    plugin.done_pending = true;
                }
                waiting.push(root);
            } else {
                self.delete_root(root)?;
            }
        }
        self.settle()?;
        Ok(waiting)
    }

    /// Root contexts that answered `proxy_on_done` with false and have not
    /// called `proxy_done` yet (the others are deleted).
    ///
    /// ```
    /// # let module = sdk_host::doc_support::pass_through()?;
    /// let mut host = sdk_host::Host::builder().start(&module)?;
    /// host.shutdown()?;
    /// assert!(host.pending_done().len() <= 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn pending_done(&self) -> Vec<ContextId> {
        self.runtime
            .state_ref()
            .plugins
            .iter()
            .filter(|p| p.done_pending && !p.deleted)
            .map(|p| p.context_id)
            .collect()
    }

    pub(super) fn delete_root(&mut self, root: ContextId) -> Result<(), Error> {
        self.invoke(Callback::Delete, root, &[root])?;
        if let Some(plugin) = self.runtime.state().plugin_of_root_mut(root) {
            plugin.deleted = true;
            plugin.next_tick_nanos = None;
        }
        Ok(())
    }
}

pub(super) struct PluginSpec {
    pub(super) name: String,
    pub(super) root_id: String,
    pub(super) config: Vec<u8>,
}

/// Configures and starts a [`Host`].
///
/// # Examples
///
/// ```no_run
/// use sdk_host::{Host, WasmModule};
/// let module = WasmModule::from_file("filter.wasm")?;
/// let _host = Host::builder()
///     .vm_id("my-vm")
///     .plugin_config(r#"{"greeting": "hi"}"#)
///     .property("xds.node.metadata.CLUSTER_ID", "Kubernetes")
///     .start(&module)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct HostBuilder {
    pub(super) settings: VmSettings,
    pub(super) plugins: Vec<PluginSpec>,
    pub(super) default_config: Vec<u8>,
    pub(super) properties: Vec<(PropertyPath, PropertyValue)>,
    pub(super) proxy: Option<Proxy>,
    pub(super) seed: u64,
    pub(super) start_nanos: u64,
    pub(super) foreign: Vec<(String, ForeignFunction)>,
}
