//! The Proxy-Wasm header-map encoding, parsed and written back: see `meshwasm_fuzz::header_map`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| meshwasm_fuzz::header_map(data));
