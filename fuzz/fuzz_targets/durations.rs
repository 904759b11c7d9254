//! The duration and percentage parsers: see `meshwasm_fuzz::durations`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| meshwasm_fuzz::durations(data));
