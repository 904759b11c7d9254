//! Metrics: define, increment, record, get.

use super::{Guest, code, narrow, write_u32, write_u64};

/// This domain's hostcalls for [`super::for_each_hostcall`]: import name,
/// parameters as the ABI types them, and the function that answers.
macro_rules! table {
    ($register:ident!($($args:tt)*)) => {
        $register! {
            $($args)*;
            proxy_define_metric(kind: u32, name: usize, name_len: usize, ret_id: usize) => $crate::hostcalls::metrics::define_metric;
            proxy_increment_metric(id: u32, offset: u64) => $crate::hostcalls::metrics::increment_metric;
            proxy_record_metric(id: u32, value: u64) => $crate::hostcalls::metrics::record_metric;
            proxy_get_metric(id: u32, ret: usize) => $crate::hostcalls::metrics::get_metric;
        }
    };
}
pub(crate) use table;

pub(crate) fn define_metric(
    g: &mut impl Guest,
    kind: u64,
    name_ptr: u64,
    name_len: u64,
    ret_id: u64,
) -> u32 {
    code((|| {
        let name = g.read(name_ptr, name_len)?;
        let id = g.state().define_metric(narrow(kind), &name)?;
        write_u32(g, ret_id, id)
    })())
}

pub(crate) fn increment_metric(g: &mut impl Guest, id: u64, offset: u64) -> u32 {
    code(g.state().increment_metric(narrow(id), offset as i64))
}

pub(crate) fn record_metric(g: &mut impl Guest, id: u64, value: u64) -> u32 {
    code(g.state().record_metric(narrow(id), value))
}

pub(crate) fn get_metric(g: &mut impl Guest, id: u64, ret_value: u64) -> u32 {
    code((|| {
        let value = g.state().get_metric(narrow(id))?;
        write_u64(g, ret_value, value)
    })())
}
