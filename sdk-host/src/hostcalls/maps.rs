//! Header maps: the `proxy_*_header_map_*` hostcalls.

use super::{Guest, HostResult, code, narrow, return_bytes, write_word};
use crate::headers::HeaderMap;
use crate::model::MapAccess;
use crate::types::Status;

/// This domain's hostcalls for [`super::for_each_hostcall`]: import name,
/// parameters as the ABI types them, and the function that answers.
macro_rules! table {
    ($register:ident!($($args:tt)*)) => {
        $register! {
            $($args)*;
            proxy_get_header_map_size(kind: u32, ret_size: usize) => $crate::hostcalls::maps::get_header_map_size;
            proxy_get_header_map_pairs(kind: u32, ret_ptr: usize, ret_size: usize) => $crate::hostcalls::maps::get_header_map_pairs;
            proxy_set_header_map_pairs(kind: u32, ptr: usize, len: usize) => $crate::hostcalls::maps::set_header_map_pairs;
            proxy_get_header_map_value(kind: u32, key: usize, key_len: usize, ret_ptr: usize, ret_size: usize) => $crate::hostcalls::maps::get_header_map_value;
            proxy_add_header_map_value(kind: u32, key: usize, key_len: usize, value: usize, value_len: usize) => $crate::hostcalls::maps::set_header_map_value::<false>;
            proxy_replace_header_map_value(kind: u32, key: usize, key_len: usize, value: usize, value_len: usize) => $crate::hostcalls::maps::set_header_map_value::<true>;
            proxy_remove_header_map_value(kind: u32, key: usize, key_len: usize) => $crate::hostcalls::maps::remove_header_map_value;
        }
    };
}
pub(crate) use table;

/// `proxy_get_header_map_size`: Envoy answers the map's `byteSize()`, the
/// sum of name and value lengths (not the serialized size the spec names).
pub(crate) fn get_header_map_size(g: &mut impl Guest, kind: u64, ret_size: u64) -> u32 {
    code((|| {
        let size = match g.state().map(narrow(kind), "proxy_get_header_map_size")? {
            MapAccess::Map(map) => map.byte_size(),
            MapAccess::Unavailable { .. } => return Err(Status::BadArgument),
        };
        write_word(g, ret_size, size as u64)
    })())
}

/// `proxy_get_header_map_pairs`: a map Envoy does not expose here reads as empty.
pub(crate) fn get_header_map_pairs(
    g: &mut impl Guest,
    kind: u64,
    ret_ptr: u64,
    ret_size: u64,
) -> u32 {
    code((|| {
        let bytes = match g.state().map(narrow(kind), "proxy_get_header_map_pairs")? {
            MapAccess::Map(map) => map.serialize(),
            MapAccess::Unavailable { .. } => Vec::new(),
        };
        return_bytes(g, &bytes, ret_ptr, ret_size)
    })())
}

pub(crate) fn set_header_map_pairs(g: &mut impl Guest, kind: u64, ptr: u64, len: u64) -> u32 {
    code((|| {
        let bytes = g.read(ptr, len)?;
        g.state().set_map_pairs(narrow(kind), &bytes)
    })())
}

fn read_name(g: &mut impl Guest, ptr: u64, len: u64) -> Result<String, Status> {
    let bytes = g.read(ptr, len)?;
    String::from_utf8(bytes).map_err(|_| Status::BadArgument)
}

pub(crate) fn get_header_map_value(
    g: &mut impl Guest,
    kind: u64,
    key_ptr: u64,
    key_len: u64,
    ret_ptr: u64,
    ret_size: u64,
) -> u32 {
    code((|| {
        let key = read_name(g, key_ptr, key_len)?;
        let value = match g.state().map(narrow(kind), "proxy_get_header_map_value")? {
            MapAccess::Map(map) => map.get_bytes(&key).ok_or(Status::NotFound)?.to_vec(),
            MapAccess::Unavailable { log_phase: true } => return Err(Status::NotFound),
            MapAccess::Unavailable { log_phase: false } => return Err(Status::BadArgument),
        };
        return_bytes(g, &value, ret_ptr, ret_size)
    })())
}

/// Which edit a header map edit makes, with the value it writes.
enum Edit {
    Add(Vec<u8>),
    Replace(Vec<u8>),
    Remove,
}

/// `proxy_add_header_map_value` (`REPLACE` false) and
/// `proxy_replace_header_map_value` (true).
pub(crate) fn set_header_map_value<const REPLACE: bool>(
    g: &mut impl Guest,
    kind: u64,
    key_ptr: u64,
    key_len: u64,
    value_ptr: u64,
    value_len: u64,
) -> u32 {
    code((|| {
        let key = read_name(g, key_ptr, key_len)?;
        let value = g.read(value_ptr, value_len)?;
        let edit = if REPLACE {
            Edit::Replace(value)
        } else {
            Edit::Add(value)
        };
        edit_map(g, kind, &key, edit)
    })())
}

pub(crate) fn remove_header_map_value(
    g: &mut impl Guest,
    kind: u64,
    key_ptr: u64,
    key_len: u64,
) -> u32 {
    code((|| {
        let key = read_name(g, key_ptr, key_len)?;
        edit_map(g, kind, &key, Edit::Remove)
    })())
}

/// Edits the map of `kind`; the key is read first, then the value.
fn edit_map(g: &mut impl Guest, kind: u64, key: &str, edit: Edit) -> HostResult {
    let call = match edit {
        Edit::Add(_) => "proxy_add_header_map_value",
        Edit::Replace(_) => "proxy_replace_header_map_value",
        Edit::Remove => "proxy_remove_header_map_value",
    };
    let map: &mut HeaderMap = g.state().map_mut(narrow(kind), call)?;
    match edit {
        Edit::Add(value) => map.add(key, value),
        // Envoy removes the header and adds it again: it moves to the end.
        Edit::Replace(value) => {
            map.remove(key);
            map.add(key, value);
        }
        Edit::Remove => {
            map.remove(key);
        }
    }
    Ok(())
}
