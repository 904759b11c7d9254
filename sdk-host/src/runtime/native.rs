//! The native front end: the `proxy_*` hostcalls as `extern "C"` symbols,
//! so a filter crate compiled for the build machine links into its own
//! `cargo test` (the link errors of proxy-wasm-rust-sdk#127 go away) and
//! runs through the same [`crate::Host`] API, under a debugger and with
//! coverage.
//!
//! The host state of the call in flight is reached through a thread-local
//! pointer that is set only while the guest runs, so hosts on different
//! test threads never meet; context ids come from a per-thread counter,
//! because the Rust SDK keeps its contexts in thread-locals too.

use super::Runtime;
use crate::error::GuestTrap;
use crate::hostcalls::{self, Guest, Widen};
use crate::model::HostState;
use crate::types::{Callback, Status};
use std::cell::Cell;
use std::ptr::null_mut;

/// The guest's exports, as linked into this binary. Built by
/// [`crate::native_module!`]; its fields are not a stable API.
///
/// ```ignore
/// // Filled in by the macro from the filter's `proxy_on_*` symbols:
/// let module: sdk_host::native::NativeModule = sdk_host::native_module!(my_filter);
/// ```
#[doc(hidden)]
#[allow(missing_docs, clippy::type_complexity)]
#[derive(Clone, Copy)]
pub struct NativeExports {
    pub initialize: unsafe extern "C" fn(),
    pub allocate: unsafe extern "C" fn(usize) -> *mut u8,
    pub on_context_create: unsafe extern "C" fn(u32, u32),
    pub on_vm_start: unsafe extern "C" fn(u32, usize) -> bool,
    pub on_configure: unsafe extern "C" fn(u32, usize) -> bool,
    pub on_tick: unsafe extern "C" fn(u32),
    pub on_queue_ready: unsafe extern "C" fn(u32, u32),
    pub on_done: unsafe extern "C" fn(u32) -> bool,
    pub on_log: unsafe extern "C" fn(u32),
    pub on_delete: unsafe extern "C" fn(u32),
    pub on_new_connection: unsafe extern "C" fn(u32) -> u32,
    pub on_downstream_data: unsafe extern "C" fn(u32, usize, bool) -> u32,
    pub on_upstream_data: unsafe extern "C" fn(u32, usize, bool) -> u32,
    pub on_downstream_connection_close: unsafe extern "C" fn(u32, u32),
    pub on_upstream_connection_close: unsafe extern "C" fn(u32, u32),
    pub on_request_headers: unsafe extern "C" fn(u32, usize, bool) -> u32,
    pub on_request_body: unsafe extern "C" fn(u32, usize, bool) -> u32,
    pub on_request_trailers: unsafe extern "C" fn(u32, usize) -> u32,
    pub on_response_headers: unsafe extern "C" fn(u32, usize, bool) -> u32,
    pub on_response_body: unsafe extern "C" fn(u32, usize, bool) -> u32,
    pub on_response_trailers: unsafe extern "C" fn(u32, usize) -> u32,
    pub on_http_call_response: unsafe extern "C" fn(u32, u32, usize, usize, usize),
    pub on_grpc_receive_initial_metadata: unsafe extern "C" fn(u32, u32, usize),
    pub on_grpc_receive: unsafe extern "C" fn(u32, u32, usize),
    pub on_grpc_receive_trailing_metadata: unsafe extern "C" fn(u32, u32, usize),
    pub on_grpc_close: unsafe extern "C" fn(u32, u32, u32),
    pub on_foreign_function: unsafe extern "C" fn(u32, u32, usize),
}

/// A filter linked into this test binary, ready to start hosts from.
///
/// # Examples
///
/// In a filter crate built with `crate-type = ["cdylib", "rlib"]` and
/// `sdk-host = { ..., features = ["native"] }` as a dev-dependency:
///
/// ```ignore
/// let module = sdk_host::native_module!(my_filter);
/// let mut host = sdk_host::Host::builder().plugin_config("{}").start_native(module)?;
/// ```
#[derive(Clone, Copy)]
pub struct NativeModule {
    exports: NativeExports,
}

impl NativeModule {
    #[doc(hidden)]
    pub fn new(exports: NativeExports) -> NativeModule {
        NativeModule { exports }
    }
}

/// Links a filter crate that uses proxy-wasm-rust-sdk (which defines every
/// `proxy_on_*` export) and returns its [`NativeModule`].
///
/// ```ignore
/// // tests/sdk_host.rs of a filter crate (crate-type ["cdylib", "rlib"]):
/// let module = sdk_host::native_module!(my_filter);
/// let mut host = sdk_host::Host::builder().plugin_config("{}").start_native(module)?;
/// let stream = host.new_http_stream()?;
/// host.send_request_headers(stream, &[(":path", "/")], true)?;
/// ```
#[macro_export]
macro_rules! native_module {
    ($krate:ident) => {{
        // Referencing the crate makes the linker keep its exports.
        #[allow(unused_imports)]
        use $krate as _;
        unsafe extern "C" {
            fn _initialize();
            fn proxy_on_memory_allocate(size: usize) -> *mut u8;
            fn proxy_on_context_create(context_id: u32, root_context_id: u32);
            fn proxy_on_vm_start(context_id: u32, size: usize) -> bool;
            fn proxy_on_configure(context_id: u32, size: usize) -> bool;
            fn proxy_on_tick(context_id: u32);
            fn proxy_on_queue_ready(context_id: u32, queue_id: u32);
            fn proxy_on_done(context_id: u32) -> bool;
            fn proxy_on_log(context_id: u32);
            fn proxy_on_delete(context_id: u32);
            fn proxy_on_new_connection(context_id: u32) -> u32;
            fn proxy_on_downstream_data(context_id: u32, size: usize, end: bool) -> u32;
            fn proxy_on_upstream_data(context_id: u32, size: usize, end: bool) -> u32;
            fn proxy_on_downstream_connection_close(context_id: u32, peer: u32);
            fn proxy_on_upstream_connection_close(context_id: u32, peer: u32);
            fn proxy_on_request_headers(context_id: u32, headers: usize, end: bool) -> u32;
            fn proxy_on_request_body(context_id: u32, size: usize, end: bool) -> u32;
            fn proxy_on_request_trailers(context_id: u32, trailers: usize) -> u32;
            fn proxy_on_response_headers(context_id: u32, headers: usize, end: bool) -> u32;
            fn proxy_on_response_body(context_id: u32, size: usize, end: bool) -> u32;
            fn proxy_on_response_trailers(context_id: u32, trailers: usize) -> u32;
            fn proxy_on_http_call_response(
                context_id: u32,
                token: u32,
                headers: usize,
                body: usize,
                trailers: usize,
            );
            fn proxy_on_grpc_receive_initial_metadata(context_id: u32, token: u32, headers: usize);
            fn proxy_on_grpc_receive(context_id: u32, token: u32, size: usize);
            fn proxy_on_grpc_receive_trailing_metadata(
                context_id: u32,
                token: u32,
                trailers: usize,
            );
            fn proxy_on_grpc_close(context_id: u32, token: u32, status: u32);
            fn proxy_on_foreign_function(context_id: u32, function_id: u32, size: usize);
        }
        $crate::native::NativeModule::new($crate::native::NativeExports {
            initialize: _initialize,
            allocate: proxy_on_memory_allocate,
            on_context_create: proxy_on_context_create,
            on_vm_start: proxy_on_vm_start,
            on_configure: proxy_on_configure,
            on_tick: proxy_on_tick,
            on_queue_ready: proxy_on_queue_ready,
            on_done: proxy_on_done,
            on_log: proxy_on_log,
            on_delete: proxy_on_delete,
            on_new_connection: proxy_on_new_connection,
            on_downstream_data: proxy_on_downstream_data,
            on_upstream_data: proxy_on_upstream_data,
            on_downstream_connection_close: proxy_on_downstream_connection_close,
            on_upstream_connection_close: proxy_on_upstream_connection_close,
            on_request_headers: proxy_on_request_headers,
            on_request_body: proxy_on_request_body,
            on_request_trailers: proxy_on_request_trailers,
            on_response_headers: proxy_on_response_headers,
            on_response_body: proxy_on_response_body,
            on_response_trailers: proxy_on_response_trailers,
            on_http_call_response: proxy_on_http_call_response,
            on_grpc_receive_initial_metadata: proxy_on_grpc_receive_initial_metadata,
            on_grpc_receive: proxy_on_grpc_receive,
            on_grpc_receive_trailing_metadata: proxy_on_grpc_receive_trailing_metadata,
            on_grpc_close: proxy_on_grpc_close,
            on_foreign_function: proxy_on_foreign_function,
        })
    }};
}

thread_local! {
    /// The state of the host whose guest is running on this thread.
    static ACTIVE: Cell<*mut NativeInner> = const { Cell::new(null_mut()) };
    /// Context ids already handed out on this thread: the SDK's contexts
    /// outlive a dropped host, and a reused id would make it panic.
    static NEXT_CONTEXT: Cell<u32> = const { Cell::new(1) };
}

struct NativeInner {
    state: HostState,
    allocate: unsafe extern "C" fn(usize) -> *mut u8,
}

/// One host's view of a natively linked guest.
pub(crate) struct NativeRuntime {
    inner: Box<NativeInner>,
    exports: NativeExports,
}

impl NativeRuntime {
    pub(crate) fn new(module: NativeModule, state: HostState) -> (NativeRuntime, u32) {
        let first_context = NEXT_CONTEXT.with(|next| {
            let first = next.get();
            // Room for this host's contexts; a host needing more than a
            // million contexts shares ids with the next host on the thread.
            next.set(first.saturating_add(1_000_000));
            first
        });
        let runtime = NativeRuntime {
            inner: Box::new(NativeInner {
                state,
                allocate: module.exports.allocate,
            }),
            exports: module.exports,
        };
        (runtime, first_context)
    }

    /// Runs `call` with this host's state reachable from the hostcalls.
    fn with_active<R>(&mut self, call: impl FnOnce(&NativeExports) -> R) -> R {
        let inner: *mut NativeInner = &mut *self.inner;
        let previous = ACTIVE.with(|active| active.replace(inner));
        let result = call(&self.exports);
        ACTIVE.with(|active| active.set(previous));
        result
    }
}

/// A dropped host is a VM going away. In wasm its memory goes with it; a
/// native filter's contexts live on in the SDK's thread-locals, where they
/// would be dropped at thread exit with no host to call. So the contexts
/// still alive get `proxy_on_delete` now, while this host can answer them.
impl Drop for NativeRuntime {
    fn drop(&mut self) {
        let state = &self.inner.state;
        let mut live: Vec<u32> = state
            .http
            .iter()
            .filter(|(_, s)| !s.finished)
            .map(|(id, _)| *id)
            .chain(
                state
                    .tcp
                    .iter()
                    .filter(|(_, s)| !s.finished)
                    .map(|(id, _)| *id),
            )
            .collect();
        live.extend(
            state
                .plugins
                .iter()
                .filter(|p| !p.deleted)
                .map(|p| p.context_id),
        );
        for context in live {
            self.inner.state.effective = context;
            // SAFETY: the linked filter's `proxy_on_delete`.
            self.with_active(|exports| unsafe { (exports.on_delete)(context) });
        }
    }
}

impl Runtime for NativeRuntime {
    fn state(&mut self) -> &mut HostState {
        &mut self.inner.state
    }

    fn state_ref(&self) -> &HostState {
        &self.inner.state
    }

    fn initialize(&mut self) -> Result<(), GuestTrap> {
        // SAFETY: the symbol is the linked filter's `_initialize`, which
        // takes no arguments.
        self.with_active(|exports| unsafe { (exports.initialize)() });
        Ok(())
    }

    fn call(&mut self, callback: Callback, args: &[u32]) -> Result<Option<u32>, GuestTrap> {
        let arg = |i: usize| args.get(i).copied().unwrap_or(0);
        let size = |i: usize| arg(i) as usize;
        let flag = |i: usize| arg(i) != 0;
        // SAFETY: each pointer is the linked filter's export of that name,
        // declared with the proxy-wasm-rust-sdk's signature.
        let result = self.with_active(|e| unsafe {
            use Callback::*;
            match callback {
                Initialize => None,
                ContextCreate => {
                    (e.on_context_create)(arg(0), arg(1));
                    Some(0)
                }
                VmStart => Some(u32::from((e.on_vm_start)(arg(0), size(1)))),
                Configure => Some(u32::from((e.on_configure)(arg(0), size(1)))),
                Tick => {
                    (e.on_tick)(arg(0));
                    Some(0)
                }
                QueueReady => {
                    (e.on_queue_ready)(arg(0), arg(1));
                    Some(0)
                }
                Done => Some(u32::from((e.on_done)(arg(0)))),
                Log => {
                    (e.on_log)(arg(0));
                    Some(0)
                }
                Delete => {
                    (e.on_delete)(arg(0));
                    Some(0)
                }
                NewConnection => Some((e.on_new_connection)(arg(0))),
                DownstreamData => Some((e.on_downstream_data)(arg(0), size(1), flag(2))),
                UpstreamData => Some((e.on_upstream_data)(arg(0), size(1), flag(2))),
                DownstreamConnectionClose => {
                    (e.on_downstream_connection_close)(arg(0), arg(1));
                    Some(0)
                }
                UpstreamConnectionClose => {
                    (e.on_upstream_connection_close)(arg(0), arg(1));
                    Some(0)
                }
                RequestHeaders => Some((e.on_request_headers)(arg(0), size(1), flag(2))),
                RequestBody => Some((e.on_request_body)(arg(0), size(1), flag(2))),
                RequestTrailers => Some((e.on_request_trailers)(arg(0), size(1))),
                ResponseHeaders => Some((e.on_response_headers)(arg(0), size(1), flag(2))),
                ResponseBody => Some((e.on_response_body)(arg(0), size(1), flag(2))),
                ResponseTrailers => Some((e.on_response_trailers)(arg(0), size(1))),
                HttpCallResponse => {
                    (e.on_http_call_response)(arg(0), arg(1), size(2), size(3), size(4));
                    Some(0)
                }
                GrpcReceiveInitialMetadata => {
                    (e.on_grpc_receive_initial_metadata)(arg(0), arg(1), size(2));
                    Some(0)
                }
                GrpcReceive => {
                    (e.on_grpc_receive)(arg(0), arg(1), size(2));
                    Some(0)
                }
                GrpcReceiveTrailingMetadata => {
                    (e.on_grpc_receive_trailing_metadata)(arg(0), arg(1), size(2));
                    Some(0)
                }
                GrpcClose => {
                    (e.on_grpc_close)(arg(0), arg(1), arg(2));
                    Some(0)
                }
                ForeignFunction => {
                    (e.on_foreign_function)(arg(0), arg(1), size(2));
                    Some(0)
                }
            }
        });
        Ok(result)
    }
}

/// Guest memory natively: the filter's own address space.
struct NativeGuest<'a> {
    inner: &'a mut NativeInner,
}

impl Guest for NativeGuest<'_> {
    fn state(&mut self) -> &mut HostState {
        &mut self.inner.state
    }

    fn read(&mut self, ptr: u64, len: u64) -> Result<Vec<u8>, Status> {
        if len == 0 {
            return Ok(Vec::new());
        }
        if ptr == 0 {
            return Err(Status::InvalidMemoryAccess);
        }
        let len = usize::try_from(len).map_err(|_| Status::InvalidMemoryAccess)?;
        // SAFETY: natively the guest passes real pointers to `len` bytes it
        // owns, as the ABI requires; a null pointer is refused above.
        Ok(unsafe { std::slice::from_raw_parts(ptr as usize as *const u8, len) }.to_vec())
    }

    fn write(&mut self, ptr: u64, bytes: &[u8]) -> Result<(), Status> {
        if ptr == 0 {
            return Err(Status::InvalidMemoryAccess);
        }
        // SAFETY: the guest gave this pointer as a place for the result
        // (or we got it from its allocator), with room for `bytes`.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), ptr as usize as *mut u8, bytes.len());
        }
        Ok(())
    }

    fn word_size(&self) -> usize {
        std::mem::size_of::<usize>()
    }

    fn allocate(&mut self, size: u64) -> Result<u64, Status> {
        let size = usize::try_from(size).map_err(|_| Status::InternalFailure)?;
        // SAFETY: the guest's own allocator export.
        let pointer = unsafe { (self.inner.allocate)(size) };
        if pointer.is_null() {
            return Err(Status::InternalFailure);
        }
        Ok(pointer as usize as u64)
    }
}

/// Runs a hostcall against the host whose guest is running on this thread.
fn with_guest(call: impl FnOnce(&mut NativeGuest<'_>) -> u32) -> u32 {
    let active = ACTIVE.with(Cell::get);
    if active.is_null() {
        // A hostcall outside any callback (e.g. from a thread the filter
        // spawned): Envoy would have no context either.
        return Status::InternalFailure as u32;
    }
    // SAFETY: ACTIVE points at the NativeInner of the host whose guest call
    // is in flight on this thread; that host does not touch it until the
    // call returns, and hostcalls run one at a time.
    let inner = unsafe { &mut *active };
    call(&mut NativeGuest { inner })
}

/// The native type of a table parameter.
macro_rules! native_type {
    (u32) => {
        u32
    };
    (usize) => {
        usize
    };
    (u64) => {
        u64
    };
}

/// Defines one `#[no_mangle] extern "C"` symbol per table row, calling its
/// function on the guest running on this thread. Pointers arrive as
/// `usize`: the symbols link by name, and a pointer and a `usize` are
/// passed alike.
macro_rules! export {
    (; $($name:ident($($arg:ident: $ty:tt),*) => $f:path;)*) => {
        $(
            #[doc = concat!("The `", stringify!($name), "` hostcall, for natively linked filters.")]
            #[unsafe(no_mangle)]
            pub extern "C" fn $name($($arg: native_type!($ty)),*) -> u32 {
                with_guest(|g| {
                    hostcalls::count(g, stringify!($name));
                    $f(g, $($arg.widen()),*)
                })
            }
        )*
    };
}

hostcalls::for_each_hostcall!(export!());
