//! The telemetry filter's parsers (Telemetry spec, attribute expressions,
//! peer metadata, gRPC framing) on arbitrary bytes: see `meshwasm_fuzz::telemetry`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| meshwasm_fuzz::telemetry(data));
