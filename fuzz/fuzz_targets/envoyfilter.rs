//! envoyfilter's YAML input: see `meshwasm_fuzz::envoyfilter`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| meshwasm_fuzz::envoyfilter(data));
