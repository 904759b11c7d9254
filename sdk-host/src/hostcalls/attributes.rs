//! Properties: `proxy_get_property` and `proxy_set_property`.

use super::{Guest, code, return_bytes};
use crate::properties::split_path;

/// This domain's hostcalls for [`super::for_each_hostcall`]: import name,
/// parameters as the ABI types them, and the function that answers.
macro_rules! table {
    ($register:ident!($($args:tt)*)) => {
        $register! {
            $($args)*;
            proxy_get_property(path: usize, path_len: usize, ret_ptr: usize, ret_size: usize) => $crate::hostcalls::attributes::get_property;
            proxy_set_property(path: usize, path_len: usize, ptr: usize, len: usize) => $crate::hostcalls::attributes::set_property;
        }
    };
}
pub(crate) use table;

pub(crate) fn get_property(
    g: &mut impl Guest,
    path_ptr: u64,
    path_len: u64,
    ret_ptr: u64,
    ret_size: u64,
) -> u32 {
    code((|| {
        let path = split_path(&g.read(path_ptr, path_len)?);
        let value = g.state().get_property(&path)?;
        return_bytes(g, &value, ret_ptr, ret_size)
    })())
}

pub(crate) fn set_property(
    g: &mut impl Guest,
    path_ptr: u64,
    path_len: u64,
    ptr: u64,
    len: u64,
) -> u32 {
    code((|| {
        let path = split_path(&g.read(path_ptr, path_len)?);
        let value = g.read(ptr, len)?;
        g.state().set_property(path, &value)
    })())
}
