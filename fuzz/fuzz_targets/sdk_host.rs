//! sdk-host's hostcalls driven by a guest playing an arbitrary program of
//! calls: see `meshwasm_fuzz::sdk_host`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| meshwasm_fuzz::sdk_host(data));
