//! Property tests (native only): no input makes the parsers panic.

use meshwasm_core::duration::parse_duration;
use meshwasm_core::fault::FaultPlan;
use meshwasm_core::header_map::{HeaderMap, serialize_pairs};
use meshwasm_core::percent::Rng;
use meshwasm_core::plan::Plan;
use meshwasm_core::rate_limit::RateLimitPlan;
use meshwasm_core::regex::FullRegex;
use meshwasm_core::request::StaticRequest;
use meshwasm_core::shared_counter::MemorySharedData;
use proptest::prelude::*;

proptest! {
    #[test]
    fn header_map_parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = HeaderMap::parse(bytes);
    }

    #[test]
    fn header_maps_round_trip(pairs in proptest::collection::vec(("[a-z:-]{1,12}", proptest::collection::vec(any::<u8>(), 0..24)), 0..12)) {
        let map = HeaderMap::parse(serialize_pairs(pairs.iter().map(|(n, v)| (n.as_bytes(), v.as_slice())))).unwrap();
        let back: Vec<(Vec<u8>, Vec<u8>)> = map.iter().map(|(n, v)| (n.to_vec(), v.to_vec())).collect();
        let want: Vec<(Vec<u8>, Vec<u8>)> = pairs.iter().map(|(n, v)| (n.as_bytes().to_vec(), v.clone())).collect();
        prop_assert_eq!(back, want);
    }

    #[test]
    fn duration_parse_never_panics(s in "\\PC{0,24}") {
        let _ = parse_duration(&s);
    }

    #[test]
    fn whole_milliseconds_round_trip(ms in 0u64..10_000_000) {
        prop_assert_eq!(parse_duration(&format!("{ms}ms")).unwrap().as_millis(), u128::from(ms));
    }

    #[test]
    fn regex_compile_never_panics(s in "\\PC{0,24}") {
        let _ = FullRegex::new(&s);
    }

    #[test]
    fn configuration_never_panics(s in "\\PC{0,64}") {
        let _ = FaultPlan::from_json(s.as_bytes());
        let _ = RateLimitPlan::from_json(s.as_bytes());
    }

    #[test]
    fn rate_limit_values_never_panic(max in any::<u32>(), per in any::<u32>(), secs in "[0-9]{1,12}(\\.[0-9]{1,9})?s", at in any::<u64>()) {
        let json = format!(r#"{{"stat_prefix":"p","token_bucket":{{"max_tokens":{max},"tokens_per_fill":{per},"fill_interval":"{secs}"}},
            "filter_enabled":{{"default_value":{{"numerator":100}}}},"enable_x_ratelimit_headers":"DRAFT_VERSION_03"}}"#);
        if let Ok(plan) = RateLimitPlan::from_json(json.as_bytes()) {
            let store = MemorySharedData::default();
            let mut rng = Rng::with_seed(at);
            for now in [at, at.wrapping_add(1), 0, u64::MAX] {
                let _ = plan.decide(&mut StaticRequest::get("/"), &store, "p", now, &mut rng);
            }
        }
    }
}
