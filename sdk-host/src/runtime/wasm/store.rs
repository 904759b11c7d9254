//! What a store holds, and what a module links against: every hostcall
//! table of `crate::hostcalls` as wasmtime imports, under the names Envoy
//! 1.40 registers (`env`, and WASI under both of its namespaces).

use crate::hostcalls::{self, Guest, Widen};
use crate::model::HostState;
use crate::types::Status;
use wasmtime::{Caller, Linker, Memory, TypedFunc};

/// What the store holds: the host model, and the guest's memory and
/// allocator once the instance exists.
pub(super) struct WasmData {
    pub(super) state: HostState,
    pub(super) memory: Option<Memory>,
    pub(super) allocate: Option<TypedFunc<i32, i32>>,
    /// The start function is running (no hostcall may).
    pub(super) instantiating: bool,
}

impl WasmData {
    pub(super) fn new(state: HostState) -> WasmData {
        WasmData {
            state,
            memory: None,
            allocate: None,
            instantiating: true,
        }
    }
}

/// The wasm type of a table parameter: pointers and sizes are wasm32's `i32`.
macro_rules! wasm_type {
    (u32) => {
        i32
    };
    (usize) => {
        i32
    };
    (u64) => {
        i64
    };
}

/// Registers `$module`'s imports in `$linker`, one per table row, each
/// calling its function on the caller's guest.
macro_rules! link {
    ($linker:ident, $module:expr; $($name:ident($($arg:ident: $ty:tt),*) => $f:path;)*) => {
        $(
            $linker.func_wrap(
                $module,
                stringify!($name),
                |mut caller: Caller<'_, WasmData>, $($arg: wasm_type!($ty)),*| -> i32 {
                    let mut guest = CallerGuest(&mut caller);
                    hostcalls::count(&mut guest, stringify!($name));
                    $f(&mut guest, $($arg.widen()),*) as i32
                },
            )?;
        )*
    };
}

/// Registers the host's imports in a linker whose store holds [`WasmData`].
pub(super) fn add_to_linker(linker: &mut Linker<WasmData>) -> wasmtime::Result<()> {
    hostcalls::for_each_hostcall!(link!(linker, "env"));
    hostcalls::wasi::emscripten_table!(link!(linker, "env"));
    linker.func_wrap("env", "emscripten_notify_memory_growth", |_: i32| {})?;
    for module in ["wasi_snapshot_preview1", "wasi_unstable"] {
        hostcalls::wasi::table!(link!(linker, module));
        linker.func_wrap(
            module,
            "proc_exit",
            |mut caller: Caller<'_, WasmData>, code: i32| {
                hostcalls::wasi::proc_exit(&mut CallerGuest(&mut caller), code.widen());
            },
        )?;
    }
    Ok(())
}

/// Guest memory reached through a hostcall's caller.
struct CallerGuest<'a, 'b>(&'a mut Caller<'b, WasmData>);

impl Guest for CallerGuest<'_, '_> {
    fn state(&mut self) -> &mut HostState {
        &mut self.0.data_mut().state
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
