//! Every filter's configuration parser (router, fault, header-match, rate-limit, telemetry, mesh) through `Plan::from_json`: see `meshwasm_fuzz::config`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| meshwasm_fuzz::config(data));
