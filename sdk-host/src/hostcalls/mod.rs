//! The 39 hostcalls of Proxy-Wasm 0.2.1 (and the 0.1.0 names that differ)
//! and the WASI calls Envoy answers, written once for both front ends:
//! arguments come in as guest addresses, are read through [`Guest`], handed
//! to the model (`crate::model`), and results are written back into guest
//! memory the way Envoy writes them.
//!
//! One file per ABI domain. Each declares its hostcalls in a `table!`
//! (import name, parameters, function), and [`for_each_hostcall`] hands
//! every table to a front end, which registers them its own way: wasmtime
//! imports (`crate::runtime::wasm`) or `extern "C"` symbols
//! (`crate::runtime::native`). A new hostcall is a function and a table row
//! in its domain's file, and a method in the model's.

pub(crate) mod attributes;
pub(crate) mod buffers;
pub(crate) mod callouts;
pub(crate) mod contexts;
pub(crate) mod logs;
pub(crate) mod maps;
pub(crate) mod metrics;
pub(crate) mod shared;
pub(crate) mod streams;
pub(crate) mod wasi;

use crate::model::HostState;
use crate::types::Status;

/// Calls `$register! { args; name(params) => function; ... }` with every
/// Proxy-Wasm hostcall. Parameters are typed `u32`, `u64`, or `usize` for
/// a guest pointer or size (`i32` in wasm32, a native word natively).
macro_rules! for_each_hostcall {
    ($register:ident!($($args:tt)*)) => {
        $crate::hostcalls::logs::table!($register!($($args)*));
        $crate::hostcalls::contexts::table!($register!($($args)*));
        $crate::hostcalls::buffers::table!($register!($($args)*));
        $crate::hostcalls::maps::table!($register!($($args)*));
        $crate::hostcalls::attributes::table!($register!($($args)*));
        $crate::hostcalls::shared::table!($register!($($args)*));
        $crate::hostcalls::streams::table!($register!($($args)*));
        $crate::hostcalls::callouts::table!($register!($($args)*));
        $crate::hostcalls::metrics::table!($register!($($args)*));
    };
}
pub(crate) use for_each_hostcall;

/// Counts a hostcall by its import name (`Host::hostcall_counts`).
pub(crate) fn count(guest: &mut impl Guest, name: &'static str) {
    *guest.state().hostcall_counts.entry(name).or_default() += 1;
}

/// An argument as a front end passes it, widened to the `u64` the hostcall
/// functions take: wasm's `i32` zero-extended, pointers as addresses.
pub(crate) trait Widen {
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

impl Widen for u32 {
    fn widen(self) -> u64 {
        u64::from(self)
    }
}

impl Widen for u64 {
    fn widen(self) -> u64 {
        self
    }
}

impl Widen for usize {
    fn widen(self) -> u64 {
        self as u64
    }
}

/// Guest memory and allocator, as one front end reaches them.
pub(crate) trait Guest {
    fn state(&mut self) -> &mut HostState;
    /// Copies `len` bytes at `ptr` out of the guest.
    fn read(&mut self, ptr: u64, len: u64) -> Result<Vec<u8>, Status>;
    /// Copies bytes into the guest at `ptr`.
    fn write(&mut self, ptr: u64, bytes: &[u8]) -> Result<(), Status>;
    /// Bytes in a guest pointer or `size_t`: 4 in wasm32, 8 natively.
    fn word_size(&self) -> usize;
    /// Asks the guest's allocator for `size` bytes.
    fn allocate(&mut self, size: u64) -> Result<u64, Status>;
}

pub(crate) type HostResult = Result<(), Status>;

/// The status code a hostcall returns.
pub(crate) fn code(result: HostResult) -> u32 {
    match result {
        Ok(()) => Status::Ok as u32,
        Err(status) => status as u32,
    }
}

fn write_u32(g: &mut impl Guest, ptr: u64, value: u32) -> HostResult {
    g.write(ptr, &value.to_le_bytes())
}

fn write_u64(g: &mut impl Guest, ptr: u64, value: u64) -> HostResult {
    g.write(ptr, &value.to_le_bytes())
}

fn write_word(g: &mut impl Guest, ptr: u64, value: u64) -> HostResult {
    if g.word_size() == 4 {
        let value = u32::try_from(value).map_err(|_| Status::InvalidMemoryAccess)?;
        write_u32(g, ptr, value)
    } else {
        write_u64(g, ptr, value)
    }
}

/// Hands bytes to the guest as Envoy does: memory from the guest's own
/// allocator (the guest frees it), or a null pointer and size 0 when empty.
fn return_bytes(g: &mut impl Guest, bytes: &[u8], ptr_ptr: u64, size_ptr: u64) -> HostResult {
    let mut pointer = 0;
    if !bytes.is_empty() {
        pointer = g.allocate(bytes.len() as u64)?;
        g.write(pointer, bytes)?;
    }
    write_word(g, ptr_ptr, pointer)?;
    write_word(g, size_ptr, bytes.len() as u64)
}

fn narrow(value: u64) -> u32 {
    u32::try_from(value).unwrap_or(u32::MAX)
}
