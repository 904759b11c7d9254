//! The wasmtime front end: any Proxy-Wasm module (Rust, Go, AssemblyScript,
//! C++) compiled once, then instantiated cheaply per host.

mod store;

use super::Runtime;
use crate::error::{GuestTrap, LoadError};
use crate::model::HostState;
use crate::types::Callback;
use std::path::Path;
use std::sync::Arc;
use store::{WasmData, add_to_linker};
use wasmtime::{
    CallHook, Config, Engine, ExternType, Func, InstancePre, Linker, Module, Store, Val, ValType,
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
        add_to_linker(&mut linker).map_err(|e| LoadError::Invalid {
            name: name.to_string(),
            message: e.to_string(),
        })?;
        // Listing a linker's definitions takes a store; this one is thrown away.
        let mut probe = Store::new(&engine, WasmData::new(HostState::unstarted()));
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
        &mut self.store.data_mut().state
    }

    fn state_ref(&self) -> &HostState {
        &self.store.data().state
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
            let logged_before = self.store.data().state.logs.len();
            if let Err(e) = func.call(&mut self.store, &params, &mut results) {
                let state = &self.store.data().state;
                return Err(GuestTrap::new(name, &e).with_guest_output(
                    &state.logs,
                    logged_before,
                    &state.call_output_logs,
                    &state.call_output,
                ));
            }
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
