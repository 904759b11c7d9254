//! Routing and fault decisions on arbitrary requests, non-UTF-8 bytes included: see `meshwasm_fuzz::routing`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| meshwasm_fuzz::routing(data));
