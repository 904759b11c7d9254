//! The path normalizer and the AuthorizationPolicy matcher on arbitrary
//! requests: see `meshwasm_fuzz::authz`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| meshwasm_fuzz::authz(data));
