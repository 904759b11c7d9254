//! Shared data and shared queues.

use super::{Guest, code, narrow, return_bytes, write_u32};

/// This domain's hostcalls for [`super::for_each_hostcall`]: import name,
/// parameters as the ABI types them, and the function that answers.
macro_rules! table {
    ($register:ident!($($args:tt)*)) => {
        $register! {
            $($args)*;
            proxy_get_shared_data(key: usize, key_len: usize, ret_ptr: usize, ret_size: usize, ret_cas: usize) => $crate::hostcalls::shared::get_shared_data;
            proxy_set_shared_data(key: usize, key_len: usize, ptr: usize, len: usize, cas: u32) => $crate::hostcalls::shared::set_shared_data;
            proxy_register_shared_queue(name: usize, name_len: usize, ret_token: usize) => $crate::hostcalls::shared::register_shared_queue;
            proxy_resolve_shared_queue(vm: usize, vm_len: usize, name: usize, name_len: usize, ret_token: usize) => $crate::hostcalls::shared::resolve_shared_queue;
            proxy_dequeue_shared_queue(token: u32, ret_ptr: usize, ret_size: usize) => $crate::hostcalls::shared::dequeue_shared_queue;
            proxy_enqueue_shared_queue(token: u32, ptr: usize, len: usize) => $crate::hostcalls::shared::enqueue_shared_queue;
        }
    };
}
pub(crate) use table;

pub(crate) fn get_shared_data(
    g: &mut impl Guest,
    key_ptr: u64,
    key_len: u64,
    ret_ptr: u64,
    ret_size: u64,
    ret_cas: u64,
) -> u32 {
    code((|| {
        let key = g.read(key_ptr, key_len)?;
        let (value, cas) = g.state().get_shared_data(&key)?;
        return_bytes(g, &value, ret_ptr, ret_size)?;
        write_u32(g, ret_cas, cas)
    })())
}

pub(crate) fn set_shared_data(
    g: &mut impl Guest,
    key_ptr: u64,
    key_len: u64,
    ptr: u64,
    len: u64,
    cas: u64,
) -> u32 {
    code((|| {
        let key = g.read(key_ptr, key_len)?;
        let value = g.read(ptr, len)?;
        g.state().set_shared_data(&key, &value, narrow(cas))
    })())
}

pub(crate) fn register_shared_queue(
    g: &mut impl Guest,
    name_ptr: u64,
    name_len: u64,
    ret_token: u64,
) -> u32 {
    code((|| {
        let name = g.read(name_ptr, name_len)?;
        let token = g.state().register_queue(&name)?;
        write_u32(g, ret_token, token)
    })())
}

pub(crate) fn resolve_shared_queue(
    g: &mut impl Guest,
    vm_ptr: u64,
    vm_len: u64,
    name_ptr: u64,
    name_len: u64,
    ret_token: u64,
) -> u32 {
    code((|| {
        let vm_id = g.read(vm_ptr, vm_len)?;
        let name = g.read(name_ptr, name_len)?;
        let token = g.state().resolve_queue(&vm_id, &name)?;
        write_u32(g, ret_token, token)
    })())
}

pub(crate) fn dequeue_shared_queue(
    g: &mut impl Guest,
    token: u64,
    ret_ptr: u64,
    ret_size: u64,
) -> u32 {
    code((|| {
        let item = g.state().dequeue(narrow(token))?;
        return_bytes(g, &item, ret_ptr, ret_size)
    })())
}

pub(crate) fn enqueue_shared_queue(g: &mut impl Guest, token: u64, ptr: u64, len: u64) -> u32 {
    code((|| {
        let item = g.read(ptr, len)?;
        g.state().enqueue(narrow(token), &item)
    })())
}
