//! The wasmtime front end: any Proxy-Wasm module (Rust, Go, AssemblyScript,
//! C++) compiled once, then instantiated cheaply per host.

use crate::abi::{self, Edit, Guest};
use crate::error::LoadError;
use crate::runtime::{GuestTrap, Runtime};
use crate::state::{Callback, HostState};
use crate::types::{Status, StreamType};
use crate::wasi;
use std::path::Path;
use std::sync::Arc;
use wasmtime::{
    CallHook, Caller, Config, Engine, ExternType, Func, InstancePre, Linker, Memory, Module, Store,
    TypedFunc, Val, ValType,
};

/// The ABI version exports a module may carry; Envoy loads these.
const ABI_VERSIONS: [&str; 3] = [
    "proxy_abi_version_0_2_1",
    "proxy_abi_version_0_2_0",
    "proxy_abi_version_0_1_0",
];

/// A Proxy-Wasm module compiled for wasmtime, ready to start hosts from.
///
/// Compiling takes most of the time; [`crate::Host`]s started from one
/// module each get a fresh instance in microseconds. A `WasmModule` is
/// `Send + Sync`: share one across parallel tests.
///
/// # Examples
///
/// ```
/// use sdk_host::WasmModule;
/// let err = WasmModule::from_bytes("x.wasm", b"not wasm").unwrap_err();
/// assert!(err.to_string().contains("x.wasm: not a WebAssembly module"));
/// ```
#[derive(Clone)]
pub struct WasmModule {
    inner: Arc<Compiled>,
}

struct Compiled {
    name: String,
    engine: Engine,
    pre: InstancePre<WasmData>,
    abi_version: &'static str,
}

impl std::fmt::Debug for WasmModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmModule")
            .field("name", &self.inner.name)
            .field("abi_version", &self.inner.abi_version)
            .finish()
    }
}

impl WasmModule {
    /// Reads and compiles a module.
    ///
    /// # Errors
    ///
    /// [`LoadError`] naming the file: it cannot be read, is not Wasm, or is
    /// not a Proxy-Wasm module Envoy would load.
    ///
    /// ```no_run
    /// let module = sdk_host::WasmModule::from_file("target/wasm32-wasip1/wasm/my_filter.wasm")?;
    /// println!("{} speaks {}", module.name(), module.abi_version());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_file(path: impl AsRef<Path>) -> Result<WasmModule, LoadError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|error| LoadError::Read {
            path: path.display().to_string(),
            error,
        })?;
        WasmModule::from_bytes(&path.display().to_string(), &bytes)
    }

    /// Compiles a module from bytes; `name` labels errors.
    ///
    /// # Errors
    ///
    /// As [`WasmModule::from_file`].
    ///
    /// ```
    /// let wat = r#"(module (memory (export "memory") 1) (func (export "proxy_abi_version_0_2_1")))"#;
    /// let module = sdk_host::WasmModule::from_bytes("tiny.wasm", &wat::parse_str(wat)?)?;
    /// assert_eq!(module.name(), "tiny.wasm");
    /// assert!(sdk_host::WasmModule::from_bytes("x.json", b"{}").is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_bytes(name: &str, bytes: &[u8]) -> Result<WasmModule, LoadError> {
        if !bytes.starts_with(b"\0asm") {
            return Err(LoadError::NotWasm {
                name: name.to_string(),
            });
        }
        let mut config = Config::new();
        config.cranelift_opt_level(wasmtime::OptLevel::Speed);
        let engine = Engine::new(&config).map_err(|e| LoadError::Invalid {
            name: name.to_string(),
            message: e.to_string(),
        })?;
        let module = Module::new(&engine, bytes).map_err(|e| LoadError::Invalid {
            name: name.to_string(),
            message: format!("{e:#}"),
        })?;
        let abi_version = ABI_VERSIONS
            .into_iter()
            .find(|v| module.get_export(v).is_some())
            .ok_or_else(|| LoadError::MissingExport {
                name: name.to_string(),
                export: "proxy_abi_version_0_2_1 (or 0_2_0, 0_1_0)".to_string(),
            })?;
        if !matches!(module.get_export("memory"), Some(ExternType::Memory(_))) {
            return Err(LoadError::MissingExport {
                name: name.to_string(),
                export: "memory".to_string(),
            });
        }
        let mut linker = Linker::new(&engine);
        define_hostcalls(&mut linker).map_err(|e| LoadError::Invalid {
            name: name.to_string(),
            message: e.to_string(),
        })?;
        let mut probe = Store::new(&engine, WasmData::empty());
        let defined: std::collections::HashSet<(String, String)> = linker
            .iter(&mut probe)
            .map(|(module, name, _)| (module.to_string(), name.to_string()))
            .collect();
        for import in module.imports() {
            if !defined.contains(&(import.module().to_string(), import.name().to_string())) {
                return Err(LoadError::UnknownImport {
                    name: name.to_string(),
                    import: format!("{}.{}", import.module(), import.name()),
                });
            }
        }
        let pre = linker
            .instantiate_pre(&module)
            .map_err(|e| LoadError::Invalid {
                name: name.to_string(),
                message: format!("{e:#}"),
            })?;
        Ok(WasmModule {
            inner: Arc::new(Compiled {
                name: name.to_string(),
                engine,
                pre,
                abi_version,
            }),
        })
    }

    /// The name the module was loaded under (its path, for files).
    ///
    /// ```
    /// let wat = r#"(module (memory (export "memory") 1) (func (export "proxy_abi_version_0_2_1")))"#;
    /// let module = sdk_host::WasmModule::from_bytes("tiny.wasm", &wat::parse_str(wat)?)?;
    /// assert_eq!(module.name(), "tiny.wasm");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// The ABI version export the module carries, e.g. `proxy_abi_version_0_2_1`.
    ///
    /// ```
    /// let wat = r#"(module (memory (export "memory") 1) (func (export "proxy_abi_version_0_2_0")))"#;
    /// let module = sdk_host::WasmModule::from_bytes("old.wasm", &wat::parse_str(wat)?)?;
    /// assert_eq!(module.abi_version(), "proxy_abi_version_0_2_0");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn abi_version(&self) -> &'static str {
        self.inner.abi_version
    }

    pub(crate) fn instantiate(&self, state: HostState) -> Result<WasmRuntime, GuestTrap> {
        let mut store = Store::new(&self.inner.engine, WasmData::new(state));
        // Envoy 1.40 (V8) crashes with a segmentation fault when a module's
        // start function calls the host (checked): refuse it the same way.
        store.call_hook(|store, hook| {
            if store.data().instantiating && matches!(hook, CallHook::CallingHost) {
                return Err(wasmtime::format_err!(
                    "the module's start function called a host function, which crashes \
                     Envoy 1.40 (a segmentation fault in V8); call it from _initialize or \
                     proxy_on_vm_start instead"
                ));
            }
            Ok(())
        });
        let instance = self
            .inner
            .pre
            .instantiate(&mut store)
            .map_err(|e| GuestTrap::new("the start function", &e))?;
        store.data_mut().instantiating = false;
        let memory = instance.get_memory(&mut store, "memory");
        // Envoy prefers `malloc` and falls back to the spec's name.
        let allocate = ["malloc", "proxy_on_memory_allocate"]
            .into_iter()
            .find_map(|name| instance.get_typed_func::<i32, i32>(&mut store, name).ok());
        store.data_mut().memory = memory;
        store.data_mut().allocate = allocate;
        let mut exports = Vec::with_capacity(Callback::ALL.len());
        for callback in Callback::ALL {
            let export = match callback {
                // Started separately, see `Runtime::initialize`.
                Callback::Initialize => None,
                other => instance.get_func(&mut store, other.export_name()),
            };
            exports.push(export.map(|func| {
                let ty = func.ty(&store);
                let params: Vec<ValType> = ty.params().collect();
                let results = ty.results().len().min(1);
                Export {
                    func,
                    params,
                    results,
                }
            }));
        }
        // Envoy's start: a reactor's `_initialize` and then `main(0, 0)` or
        // `__main_void()`; else a command's `_start`.
        let mut startup = Vec::new();
        if let Some(init) = instance.get_func(&mut store, "_initialize") {
            startup.push(("_initialize", init));
            if let Some(main) = instance.get_func(&mut store, "main") {
                startup.push(("main", main));
            } else if let Some(main) = instance.get_func(&mut store, "__main_void") {
                startup.push(("__main_void", main));
            }
        } else if let Some(start) = instance.get_func(&mut store, "_start") {
            startup.push(("_start", start));
        }
        Ok(WasmRuntime {
            store,
            exports,
            startup,
        })
    }
}

/// What the store holds: the host model, and the guest's memory and
/// allocator once the instance exists.
pub(crate) struct WasmData {
    state: Option<HostState>,
    memory: Option<Memory>,
    allocate: Option<TypedFunc<i32, i32>>,
    /// The start function is running (no hostcall may).
    instantiating: bool,
}

impl WasmData {
    fn new(state: HostState) -> WasmData {
        WasmData {
            state: Some(state),
            memory: None,
            allocate: None,
            instantiating: true,
        }
    }

    fn empty() -> WasmData {
        WasmData {
            state: None,
            memory: None,
            allocate: None,
            instantiating: false,
        }
    }
}

struct Export {
    func: Func,
    params: Vec<ValType>,
    results: usize,
}

/// One instance of a module with its host state.
pub(crate) struct WasmRuntime {
    store: Store<WasmData>,
    exports: Vec<Option<Export>>,
    startup: Vec<(&'static str, Func)>,
}

impl Runtime for WasmRuntime {
    fn state(&mut self) -> &mut HostState {
        // The state is only absent in the throwaway store used to probe
        // the linker, which never becomes a runtime.
        match self.store.data_mut().state.as_mut() {
            Some(state) => state,
            None => unreachable_state(),
        }
    }

    fn state_ref(&self) -> &HostState {
        match self.store.data().state.as_ref() {
            Some(state) => state,
            None => unreachable_state(),
        }
    }

    fn initialize(&mut self) -> Result<(), GuestTrap> {
        for (name, func) in self.startup.clone() {
            let ty = func.ty(&self.store);
            let params: Vec<Val> = ty
                .params()
                .map(|p| {
                    if matches!(p, ValType::I64) {
                        Val::I64(0)
                    } else {
                        Val::I32(0)
                    }
                })
                .collect();
            let mut results: Vec<Val> = ty.results().map(|_| Val::I32(0)).collect();
            func.call(&mut self.store, &params, &mut results)
                .map_err(|e| GuestTrap::new(name, &e))?;
        }
        Ok(())
    }

    fn call(&mut self, callback: Callback, args: &[u32]) -> Result<Option<u32>, GuestTrap> {
        let Some(export) = &self.exports[callback as usize] else {
            return Ok(None);
        };
        let mut params = [
            Val::I32(0),
            Val::I32(0),
            Val::I32(0),
            Val::I32(0),
            Val::I32(0),
        ];
        let count = export.params.len().min(params.len());
        for (i, ty) in export.params.iter().take(count).enumerate() {
            let arg = args.get(i).copied().unwrap_or(0);
            params[i] = match ty {
                ValType::I64 => Val::I64(i64::from(arg)),
                _ => Val::I32(arg as i32),
            };
        }
        let mut results = [Val::I32(0)];
        let func = export.func;
        let wanted = export.results;
        func.call(&mut self.store, &params[..count], &mut results[..wanted])
            .map_err(|e| GuestTrap::new(callback.export_name(), &e))?;
        if wanted == 0 {
            return Ok(Some(0));
        }
        Ok(Some(match results[0] {
            Val::I32(v) => v as u32,
            Val::I64(v) => v as u32,
            _ => 0,
        }))
    }
}

#[allow(clippy::panic)]
fn unreachable_state() -> ! {
    // Invariant: every runtime's store is created with a state.
    panic!("sdk-host: runtime without host state")
}

/// Guest memory reached through a hostcall's caller.
struct CallerGuest<'a, 'b>(&'a mut Caller<'b, WasmData>);

impl Guest for CallerGuest<'_, '_> {
    fn state(&mut self) -> &mut HostState {
        match self.0.data_mut().state.as_mut() {
            Some(state) => state,
            None => unreachable_state(),
        }
    }

    fn read(&mut self, ptr: u64, len: u64) -> Result<Vec<u8>, Status> {
        if len == 0 {
            return Ok(Vec::new());
        }
        let memory = self.0.data().memory.ok_or(Status::InvalidMemoryAccess)?;
        let data = memory.data(&*self.0);
        let start = usize::try_from(ptr).map_err(|_| Status::InvalidMemoryAccess)?;
        let len = usize::try_from(len).map_err(|_| Status::InvalidMemoryAccess)?;
        let end = start.checked_add(len).ok_or(Status::InvalidMemoryAccess)?;
        data.get(start..end)
            .map(<[u8]>::to_vec)
            .ok_or(Status::InvalidMemoryAccess)
    }

    fn write(&mut self, ptr: u64, bytes: &[u8]) -> Result<(), Status> {
        let memory = self.0.data().memory.ok_or(Status::InvalidMemoryAccess)?;
        let data = memory.data_mut(&mut *self.0);
        let start = usize::try_from(ptr).map_err(|_| Status::InvalidMemoryAccess)?;
        let end = start
            .checked_add(bytes.len())
            .ok_or(Status::InvalidMemoryAccess)?;
        data.get_mut(start..end)
            .ok_or(Status::InvalidMemoryAccess)?
            .copy_from_slice(bytes);
        Ok(())
    }

    fn word_size(&self) -> usize {
        4
    }

    fn allocate(&mut self, size: u64) -> Result<u64, Status> {
        let allocate = self
            .0
            .data()
            .allocate
            .clone()
            .ok_or(Status::InternalFailure)?;
        let size = i32::try_from(size).map_err(|_| Status::InternalFailure)?;
        let pointer = allocate
            .call(&mut *self.0, size)
            .map_err(|_| Status::InternalFailure)?;
        if pointer == 0 {
            return Err(Status::InternalFailure);
        }
        Ok(u64::from(pointer as u32))
    }
}

/// A Wasm argument as the ABI functions take it: i32 zero-extended, i64 as is.
trait Widen {
    fn widen(self) -> u64;
}

impl Widen for i32 {
    fn widen(self) -> u64 {
        u64::from(self as u32)
    }
}

impl Widen for i64 {
    fn widen(self) -> u64 {
        self as u64
    }
}

macro_rules! hostcall {
    ($linker:ident, $module:expr, $name:literal, $f:path $(, $arg:ident : $ty:ty)*) => {
        $linker.func_wrap(
            $module,
            $name,
            |mut caller: Caller<'_, WasmData>, $($arg: $ty),*| -> i32 {
                $f(&mut CallerGuest(&mut caller), $($arg.widen()),*) as i32
            },
        )?;
    };
}

fn define_hostcalls(linker: &mut Linker<WasmData>) -> wasmtime::Result<()> {
    let env = "env";
    hostcall!(linker, env, "proxy_log", abi::log, level: i32, ptr: i32, len: i32);
    hostcall!(linker, env, "proxy_get_log_level", abi::get_log_level, ret: i32);
    hostcall!(linker, env, "proxy_get_current_time_nanoseconds", abi::get_current_time_nanoseconds, ret: i32);
    hostcall!(linker, env, "proxy_set_tick_period_milliseconds", abi::set_tick_period_milliseconds, period: i32);
    hostcall!(linker, env, "proxy_get_buffer_bytes", abi::get_buffer_bytes, kind: i32, start: i32, max: i32, ret_ptr: i32, ret_size: i32);
    hostcall!(linker, env, "proxy_set_buffer_bytes", abi::set_buffer_bytes, kind: i32, start: i32, size: i32, ptr: i32, len: i32);
    hostcall!(linker, env, "proxy_get_buffer_status", abi::get_buffer_status, kind: i32, ret_size: i32, ret_flags: i32);
    hostcall!(linker, env, "proxy_get_header_map_size", abi::get_header_map_size, kind: i32, ret_size: i32);
    hostcall!(linker, env, "proxy_get_header_map_pairs", abi::get_header_map_pairs, kind: i32, ret_ptr: i32, ret_size: i32);
    hostcall!(linker, env, "proxy_set_header_map_pairs", abi::set_header_map_pairs, kind: i32, ptr: i32, len: i32);
    hostcall!(linker, env, "proxy_get_header_map_value", abi::get_header_map_value, kind: i32, key: i32, key_len: i32, ret_ptr: i32, ret_size: i32);
    for (name, edit) in [
        ("proxy_add_header_map_value", 0),
        ("proxy_replace_header_map_value", 1),
        ("proxy_remove_header_map_value", 2),
    ] {
        if edit == 2 {
            linker.func_wrap(
                env,
                name,
                |mut caller: Caller<'_, WasmData>, kind: i32, key: i32, key_len: i32| -> i32 {
                    abi::edit_header_map_value(
                        &mut CallerGuest(&mut caller),
                        Edit::Remove,
                        kind.widen(),
                        key.widen(),
                        key_len.widen(),
                        0,
                        0,
                    ) as i32
                },
            )?;
        } else {
            linker.func_wrap(
                env,
                name,
                move |mut caller: Caller<'_, WasmData>,
                      kind: i32,
                      key: i32,
                      key_len: i32,
                      value: i32,
                      value_len: i32|
                      -> i32 {
                    let edit = if edit == 0 { Edit::Add } else { Edit::Replace };
                    abi::edit_header_map_value(
                        &mut CallerGuest(&mut caller),
                        edit,
                        kind.widen(),
                        key.widen(),
                        key_len.widen(),
                        value.widen(),
                        value_len.widen(),
                    ) as i32
                },
            )?;
        }
    }
    hostcall!(linker, env, "proxy_get_property", abi::get_property, path: i32, path_len: i32, ret_ptr: i32, ret_size: i32);
    hostcall!(linker, env, "proxy_set_property", abi::set_property, path: i32, path_len: i32, ptr: i32, len: i32);
    hostcall!(linker, env, "proxy_get_shared_data", abi::get_shared_data, key: i32, key_len: i32, ret_ptr: i32, ret_size: i32, ret_cas: i32);
    hostcall!(linker, env, "proxy_set_shared_data", abi::set_shared_data, key: i32, key_len: i32, ptr: i32, len: i32, cas: i32);
    hostcall!(linker, env, "proxy_register_shared_queue", abi::register_shared_queue, name: i32, name_len: i32, ret_token: i32);
    hostcall!(linker, env, "proxy_resolve_shared_queue", abi::resolve_shared_queue, vm: i32, vm_len: i32, name: i32, name_len: i32, ret_token: i32);
    hostcall!(linker, env, "proxy_dequeue_shared_queue", abi::dequeue_shared_queue, token: i32, ret_ptr: i32, ret_size: i32);
    hostcall!(linker, env, "proxy_enqueue_shared_queue", abi::enqueue_shared_queue, token: i32, ptr: i32, len: i32);
    hostcall!(linker, env, "proxy_continue_stream", abi::continue_stream, kind: i32);
    hostcall!(linker, env, "proxy_close_stream", abi::close_stream, kind: i32);
    hostcall!(linker, env, "proxy_send_local_response", abi::send_local_response, status: i32, details: i32, details_len: i32, body: i32, body_len: i32, headers: i32, headers_len: i32, grpc_status: i32);
    hostcall!(linker, env, "proxy_http_call", abi::http_call, upstream: i32, upstream_len: i32, headers: i32, headers_len: i32, body: i32, body_len: i32, trailers: i32, trailers_len: i32, timeout: i32, ret_token: i32);
    hostcall!(linker, env, "proxy_grpc_call", abi::grpc_call, upstream: i32, upstream_len: i32, service: i32, service_len: i32, method: i32, method_len: i32, metadata: i32, metadata_len: i32, message: i32, message_len: i32, timeout: i32, ret_token: i32);
    hostcall!(linker, env, "proxy_grpc_stream", abi::grpc_stream, upstream: i32, upstream_len: i32, service: i32, service_len: i32, method: i32, method_len: i32, metadata: i32, metadata_len: i32, ret_token: i32);
    hostcall!(linker, env, "proxy_grpc_send", abi::grpc_send, token: i32, ptr: i32, len: i32, end_stream: i32);
    hostcall!(linker, env, "proxy_grpc_cancel", abi::grpc_cancel, token: i32);
    hostcall!(linker, env, "proxy_grpc_close", abi::grpc_close, token: i32);
    hostcall!(linker, env, "proxy_get_status", abi::get_status, ret_code: i32, ret_ptr: i32, ret_size: i32);
    hostcall!(linker, env, "proxy_set_effective_context", abi::set_effective_context, context: i32);
    hostcall!(linker, env, "proxy_done", abi::done);
    hostcall!(linker, env, "proxy_call_foreign_function", abi::call_foreign_function, name: i32, name_len: i32, args: i32, args_len: i32, ret_ptr: i32, ret_size: i32);
    hostcall!(linker, env, "proxy_define_metric", abi::define_metric, kind: i32, name: i32, name_len: i32, ret_id: i32);
    hostcall!(linker, env, "proxy_increment_metric", abi::increment_metric, id: i32, offset: i64);
    hostcall!(linker, env, "proxy_record_metric", abi::record_metric, id: i32, value: i64);
    hostcall!(linker, env, "proxy_get_metric", abi::get_metric, id: i32, ret: i32);

    // ABI 0.1.0 names that 0.2 replaced.
    hostcall!(linker, env, "proxy_get_configuration", get_configuration, ret_ptr: i32, ret_size: i32);
    linker.func_wrap(
        env,
        "proxy_continue_request",
        |mut caller: Caller<'_, WasmData>| -> i32 {
            abi::continue_direction(&mut CallerGuest(&mut caller), StreamType::HttpRequest) as i32
        },
    )?;
    linker.func_wrap(
        env,
        "proxy_continue_response",
        |mut caller: Caller<'_, WasmData>| -> i32 {
            abi::continue_direction(&mut CallerGuest(&mut caller), StreamType::HttpResponse) as i32
        },
    )?;
    hostcall!(
        linker,
        env,
        "proxy_clear_route_cache",
        abi::clear_route_cache
    );

    // Other `env` functions Envoy registers for C++ (Emscripten) modules.
    linker.func_wrap(env, "pthread_equal", |a: i32, b: i32| -> i32 {
        i32::from(a == b)
    })?;
    linker.func_wrap(env, "emscripten_notify_memory_growth", |_: i32| {})?;
    linker.func_wrap(
        env,
        "envoy_resolve_dns",
        |mut caller: Caller<'_, WasmData>, _: i32, _: i32, _: i32| -> i32 {
            if let Some(state) = caller.data_mut().state.as_mut() {
                state.violation(
                    "envoy_resolve_dns",
                    "DNS resolution is not modelled by sdk-host",
                );
            }
            Status::Unimplemented as i32
        },
    )?;

    for module in ["wasi_snapshot_preview1", "wasi_unstable"] {
        define_wasi(linker, module)?;
    }
    Ok(())
}

/// The WASI functions, as Envoy 1.40 (proxy-wasm-cpp-host) answers them.
fn define_wasi(linker: &mut Linker<WasmData>, module: &str) -> wasmtime::Result<()> {
    use wasi::{BADF, EXIST, NOENT, NOSYS, NOTSUP, SUCCESS};
    let stdio = |fd: i32| fd == 1 || fd == 2;
    let on_stdio = move |fd: i32| {
        if stdio(fd) {
            SUCCESS as i32
        } else {
            BADF as i32
        }
    };
    hostcall!(linker, module, "fd_write", wasi::fd_write, fd: i32, iovs: i32, count: i32, ret: i32);
    linker.func_wrap(
        module,
        "fd_pwrite",
        |mut caller: Caller<'_, WasmData>,
         fd: i32,
         iovs: i32,
         count: i32,
         _offset: i64,
         ret: i32|
         -> i32 {
            wasi::fd_write(
                &mut CallerGuest(&mut caller),
                fd.widen(),
                iovs.widen(),
                count.widen(),
                ret.widen(),
            ) as i32
        },
    )?;
    hostcall!(linker, module, "fd_fdstat_get", wasi::fd_fdstat_get, fd: i32, ret: i32);
    hostcall!(linker, module, "environ_get", wasi::environ_get, ptrs: i32, buf: i32);
    hostcall!(linker, module, "environ_sizes_get", wasi::environ_sizes_get, count: i32, size: i32);
    hostcall!(linker, module, "args_get", wasi::args_get, ptrs: i32, buf: i32);
    hostcall!(linker, module, "args_sizes_get", wasi::args_sizes_get, count: i32, size: i32);
    hostcall!(linker, module, "clock_time_get", wasi::clock_time_get, clock: i32, precision: i64, ret: i32);
    hostcall!(linker, module, "clock_res_get", wasi::clock_res_get, clock: i32, ret: i32);
    hostcall!(linker, module, "random_get", wasi::random_get, buf: i32, len: i32);
    hostcall!(linker, module, "poll_oneoff", wasi::poll_oneoff, input: i32, output: i32, count: i32, ret: i32);
    hostcall!(linker, module, "fd_tell", wasi::fd_tell, fd: i32, ret: i32);
    linker.func_wrap(
        module,
        "proc_exit",
        |mut caller: Caller<'_, WasmData>, code: i32| {
            // Envoy logs and returns; the guest traps on its own right after.
            if let Some(state) = caller.data_mut().state.as_mut() {
                state.exit_code = Some(code as u32);
            }
        },
    )?;
    linker.func_wrap(module, "sched_yield", || -> i32 { SUCCESS as i32 })?;
    linker.func_wrap(module, "fd_read", |_: i32, _: i32, _: i32, _: i32| -> i32 {
        NOSYS as i32
    })?;
    linker.func_wrap(
        module,
        "fd_pread",
        |_: i32, _: i32, _: i32, _: i64, _: i32| -> i32 { NOSYS as i32 },
    )?;
    linker.func_wrap(module, "fd_seek", |_: i32, _: i64, _: i32, _: i32| -> i32 {
        SUCCESS as i32
    })?;
    linker.func_wrap(module, "fd_close", |_: i32| -> i32 { SUCCESS as i32 })?;
    linker.func_wrap(module, "fd_fdstat_set_flags", |_: i32, _: i32| -> i32 {
        NOSYS as i32
    })?;
    linker.func_wrap(module, "fd_prestat_get", |_: i32, _: i32| -> i32 {
        BADF as i32
    })?;
    linker.func_wrap(
        module,
        "fd_prestat_dir_name",
        |_: i32, _: i32, _: i32| -> i32 { NOSYS as i32 },
    )?;
    linker.func_wrap(module, "fd_filestat_get", |_: i32, _: i32| -> i32 {
        BADF as i32
    })?;
    linker.func_wrap(
        module,
        "fd_advise",
        |_: i32, _: i64, _: i64, _: i32| -> i32 { SUCCESS as i32 },
    )?;
    linker.func_wrap(
        module,
        "fd_allocate",
        move |fd: i32, _: i64, _: i64| -> i32 { on_stdio(fd) },
    )?;
    linker.func_wrap(module, "fd_datasync", move |fd: i32| -> i32 {
        on_stdio(fd)
    })?;
    linker.func_wrap(module, "fd_sync", move |fd: i32| -> i32 { on_stdio(fd) })?;
    linker.func_wrap(
        module,
        "fd_fdstat_set_rights",
        move |fd: i32, _: i64, _: i64| -> i32 { on_stdio(fd) },
    )?;
    linker.func_wrap(
        module,
        "fd_filestat_set_size",
        move |fd: i32, _: i64| -> i32 { on_stdio(fd) },
    )?;
    linker.func_wrap(
        module,
        "fd_filestat_set_times",
        move |fd: i32, _: i64, _: i64, _: i32| -> i32 { on_stdio(fd) },
    )?;
    linker.func_wrap(module, "fd_renumber", move |fd: i32, to: i32| -> i32 {
        if stdio(fd) && stdio(to) {
            NOTSUP as i32
        } else {
            BADF as i32
        }
    })?;
    linker.func_wrap(
        module,
        "fd_readdir",
        |mut caller: Caller<'_, WasmData>, _: i32, _: i32, _: i32, _: i64, ret: i32| -> i32 {
            let _ = CallerGuest(&mut caller).write(ret.widen(), &0u32.to_le_bytes());
            // Envoy's comment says ENOTDIR; the number it returns is EXIST.
            EXIST as i32
        },
    )?;
    linker.func_wrap(
        module,
        "path_open",
        |_: i32, _: i32, _: i32, _: i32, _: i32, _: i64, _: i64, _: i32, _: i32| -> i32 {
            NOENT as i32
        },
    )?;
    linker.func_wrap(
        module,
        "path_filestat_get",
        |_: i32, _: i32, _: i32, _: i32, _: i32| -> i32 { NOTSUP as i32 },
    )?;
    linker.func_wrap(
        module,
        "path_create_directory",
        |_: i32, _: i32, _: i32| -> i32 { NOTSUP as i32 },
    )?;
    linker.func_wrap(
        module,
        "path_remove_directory",
        |_: i32, _: i32, _: i32| -> i32 { NOTSUP as i32 },
    )?;
    linker.func_wrap(
        module,
        "path_unlink_file",
        |_: i32, _: i32, _: i32| -> i32 { NOTSUP as i32 },
    )?;
    linker.func_wrap(
        module,
        "path_rename",
        |_: i32, _: i32, _: i32, _: i32, _: i32, _: i32| -> i32 { NOTSUP as i32 },
    )?;
    linker.func_wrap(
        module,
        "path_filestat_set_times",
        |_: i32, _: i32, _: i32, _: i32, _: i64, _: i64, _: i32| -> i32 { NOTSUP as i32 },
    )?;
    linker.func_wrap(
        module,
        "path_readlink",
        |mut caller: Caller<'_, WasmData>,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         ret: i32|
         -> i32 {
            let _ = CallerGuest(&mut caller).write(ret.widen(), &0u32.to_le_bytes());
            NOTSUP as i32
        },
    )?;
    // Envoy declares these two with fewer parameters than WASI does; a
    // module importing WASI's signatures fails to load there, and here.
    linker.func_wrap(
        module,
        "path_link",
        |_: i32, _: i32, _: i32, _: i32, _: i32, _: i32| -> i32 { NOTSUP as i32 },
    )?;
    linker.func_wrap(
        module,
        "path_symlink",
        |_: i32, _: i32, _: i32, _: i32| -> i32 { NOTSUP as i32 },
    )?;
    linker.func_wrap(
        module,
        "sock_accept",
        |mut caller: Caller<'_, WasmData>, _: i32, _: i32, ret: i32| -> i32 {
            let _ = CallerGuest(&mut caller).write(ret.widen(), &0u64.to_le_bytes());
            NOTSUP as i32
        },
    )?;
    linker.func_wrap(
        module,
        "sock_recv",
        |mut caller: Caller<'_, WasmData>,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         ret_size: i32,
         ret_flags: i32|
         -> i32 {
            let mut guest = CallerGuest(&mut caller);
            let _ = guest.write(ret_size.widen(), &0u32.to_le_bytes());
            let _ = guest.write(ret_flags.widen(), &0u16.to_le_bytes());
            NOTSUP as i32
        },
    )?;
    linker.func_wrap(
        module,
        "sock_send",
        |mut caller: Caller<'_, WasmData>, _: i32, _: i32, _: i32, _: i32, ret: i32| -> i32 {
            let _ = CallerGuest(&mut caller).write(ret.widen(), &0u32.to_le_bytes());
            NOTSUP as i32
        },
    )?;
    linker.func_wrap(module, "sock_shutdown", |_: i32, _: i32| -> i32 {
        NOTSUP as i32
    })?;
    Ok(())
}

/// ABI 0.1.0's `proxy_get_configuration`: the plugin configuration.
fn get_configuration(g: &mut impl Guest, ret_ptr: u64, ret_size: u64) -> u32 {
    abi::get_buffer_bytes(
        g,
        crate::types::BufferType::PluginConfiguration as u64,
        0,
        u64::from(u32::MAX),
        ret_ptr,
        ret_size,
    )
}
