//! Buffers: `proxy_get_buffer_bytes`, `proxy_set_buffer_bytes`,
//! `proxy_get_buffer_status`, and ABI 0.1.0's `proxy_get_configuration`.

use super::{Guest, code, narrow, return_bytes, write_u32, write_word};
use crate::types::{BufferType, Status};

/// This domain's hostcalls for [`super::for_each_hostcall`]: import name,
/// parameters as the ABI types them, and the function that answers.
macro_rules! table {
    ($register:ident!($($args:tt)*)) => {
        $register! {
            $($args)*;
            proxy_get_buffer_bytes(kind: u32, start: usize, max: usize, ret_ptr: usize, ret_size: usize) => $crate::hostcalls::buffers::get_buffer_bytes;
            proxy_set_buffer_bytes(kind: u32, start: usize, size: usize, ptr: usize, len: usize) => $crate::hostcalls::buffers::set_buffer_bytes;
            proxy_get_buffer_status(kind: u32, ret_size: usize, ret_flags: usize) => $crate::hostcalls::buffers::get_buffer_status;
            proxy_get_configuration(ret_ptr: usize, ret_size: usize) => $crate::hostcalls::buffers::get_configuration;
        }
    };
}
pub(crate) use table;

pub(crate) fn get_buffer_bytes(
    g: &mut impl Guest,
    kind: u64,
    start: u64,
    max_size: u64,
    ret_ptr: u64,
    ret_size: u64,
) -> u32 {
    code((|| {
        let buffer = g.state().buffer(narrow(kind))?;
        let start = usize::try_from(start).map_err(|_| Status::BadArgument)?;
        let max_size = usize::try_from(max_size).map_err(|_| Status::BadArgument)?;
        // Envoy refuses only a range that overflows; it clamps the rest to
        // what is there (a start past the end reads nothing).
        let end = start.checked_add(max_size).ok_or(Status::BadArgument)?;
        let start = start.min(buffer.len());
        let end = end.min(buffer.len());
        return_bytes(g, &buffer[start..end], ret_ptr, ret_size)
    })())
}

pub(crate) fn set_buffer_bytes(
    g: &mut impl Guest,
    kind: u64,
    start: u64,
    size: u64,
    ptr: u64,
    len: u64,
) -> u32 {
    code((|| {
        let value = g.read(ptr, len)?;
        let start = usize::try_from(start).unwrap_or(usize::MAX);
        let size = usize::try_from(size).unwrap_or(usize::MAX);
        g.state().set_buffer(narrow(kind), start, size, &value)
    })())
}

pub(crate) fn get_buffer_status(
    g: &mut impl Guest,
    kind: u64,
    ret_size: u64,
    ret_flags: u64,
) -> u32 {
    code((|| {
        let size = g.state().buffer(narrow(kind))?.len();
        write_word(g, ret_size, size as u64)?;
        write_u32(g, ret_flags, 0)
    })())
}

/// ABI 0.1.0's `proxy_get_configuration`: the plugin configuration.
pub(crate) fn get_configuration(g: &mut impl Guest, ret_ptr: u64, ret_size: u64) -> u32 {
    get_buffer_bytes(
        g,
        BufferType::PluginConfiguration as u64,
        0,
        u64::from(u32::MAX),
        ret_ptr,
        ret_size,
    )
}
