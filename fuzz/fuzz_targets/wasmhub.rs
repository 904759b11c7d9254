//! wasmhub's manifest, index, module and tar/gzip layer readers on a hostile registry's bytes: see `meshwasm_fuzz::wasmhub`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| meshwasm_fuzz::wasmhub(data));
