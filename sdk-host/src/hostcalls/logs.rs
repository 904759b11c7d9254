//! `proxy_log` and `proxy_get_log_level`.

use super::{Guest, code, narrow, write_u32};

/// This domain's hostcalls for [`super::for_each_hostcall`]: import name,
/// parameters as the ABI types them, and the function that answers.
macro_rules! table {
    ($register:ident!($($args:tt)*)) => {
        $register! {
            $($args)*;
            proxy_log(level: u32, ptr: usize, len: usize) => $crate::hostcalls::logs::log;
            proxy_get_log_level(ret: usize) => $crate::hostcalls::logs::get_log_level;
        }
    };
}
pub(crate) use table;

pub(crate) fn log(g: &mut impl Guest, level: u64, ptr: u64, len: u64) -> u32 {
    code((|| {
        let message = g.read(ptr, len)?;
        g.state().log(narrow(level), &message)
    })())
}

pub(crate) fn get_log_level(g: &mut impl Guest, ret: u64) -> u32 {
    let level = g.state().settings.log_level as u32;
    code(write_u32(g, ret, level))
}
