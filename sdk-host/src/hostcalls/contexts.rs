//! The clock, ticks, contexts and foreign functions.

use super::{Guest, code, narrow, return_bytes, write_u64};

/// This domain's hostcalls for [`super::for_each_hostcall`]: import name,
/// parameters as the ABI types them, and the function that answers.
/// `proxy_clear_route_cache` is ABI 0.1.0's.
macro_rules! table {
    ($register:ident!($($args:tt)*)) => {
        $register! {
            $($args)*;
            proxy_get_current_time_nanoseconds(ret: usize) => $crate::hostcalls::contexts::get_current_time_nanoseconds;
            proxy_set_tick_period_milliseconds(period: u32) => $crate::hostcalls::contexts::set_tick_period_milliseconds;
            proxy_set_effective_context(context: u32) => $crate::hostcalls::contexts::set_effective_context;
            proxy_done() => $crate::hostcalls::contexts::done;
            proxy_call_foreign_function(name: usize, name_len: usize, args: usize, args_len: usize, ret_ptr: usize, ret_size: usize) => $crate::hostcalls::contexts::call_foreign_function;
            proxy_clear_route_cache() => $crate::hostcalls::contexts::clear_route_cache;
        }
    };
}
pub(crate) use table;

pub(crate) fn get_current_time_nanoseconds(g: &mut impl Guest, ret: u64) -> u32 {
    let now = g.state().now_nanos();
    code(write_u64(g, ret, now))
}

pub(crate) fn set_tick_period_milliseconds(g: &mut impl Guest, period: u64) -> u32 {
    code(g.state().set_tick_period(narrow(period)))
}

pub(crate) fn set_effective_context(g: &mut impl Guest, context: u64) -> u32 {
    code(g.state().set_effective_context(narrow(context)))
}

pub(crate) fn done(g: &mut impl Guest) -> u32 {
    code(g.state().done())
}

pub(crate) fn call_foreign_function(
    g: &mut impl Guest,
    name_ptr: u64,
    name_len: u64,
    args_ptr: u64,
    args_len: u64,
    ret_ptr: u64,
    ret_size: u64,
) -> u32 {
    code((|| {
        let name = g.read(name_ptr, name_len)?;
        let args = g.read(args_ptr, args_len)?;
        let result = g.state().call_foreign(&name, &args)?;
        return_bytes(g, &result, ret_ptr, ret_size)
    })())
}

/// ABI 0.1.0's `proxy_clear_route_cache`.
pub(crate) fn clear_route_cache(g: &mut impl Guest) -> u32 {
    code(
        g.state()
            .call_foreign(b"clear_route_cache", &[])
            .map(|_| ()),
    )
}
