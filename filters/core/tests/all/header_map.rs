//! Reading Proxy-Wasm serialized header maps.

use meshwasm_core::header_map::{HeaderMap, serialize_pairs};
use wasm_bindgen_test::wasm_bindgen_test;

#[wasm_bindgen_test(unsupported = test)]
fn round_trips_and_joins_repeated_headers() {
    let buf = serialize_pairs([
        (":path", &b"/x"[..]),
        ("cookie", b"a=1"),
        ("cookie", b"b=2"),
        ("empty", b""),
    ]);
    let map = HeaderMap::parse(buf).unwrap();
    assert_eq!(map.len(), 4);
    assert_eq!(map.get("cookie").as_deref(), Some("a=1,b=2"));
    assert_eq!(map.get("empty").as_deref(), Some(""));
    assert_eq!(map.get("missing"), None);
    assert!(HeaderMap::parse(Vec::new()).unwrap().is_empty());
}

#[wasm_bindgen_test(unsupported = test)]
fn non_utf8_values_read_lossily_instead_of_failing() {
    let map = HeaderMap::parse(serialize_pairs([("x", &[0x66, 0xff, 0x6f][..])])).unwrap();
    assert_eq!(map.get("x").as_deref(), Some("f\u{fffd}o"));
    assert_eq!(map.first("x"), Some(&[0x66, 0xff, 0x6f][..]));
}

#[wasm_bindgen_test(unsupported = test)]
fn malformed_buffers_are_errors_not_panics() {
    let good = serialize_pairs([("name", "value")]);
    for cut in 1..good.len() {
        assert!(
            HeaderMap::parse(good[..cut].to_vec()).is_err(),
            "truncated at {cut}"
        );
    }
    let mut huge_count = good.clone();
    huge_count[..4].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(HeaderMap::parse(huge_count).is_err());
    let mut no_nul = good;
    let last = no_nul.len() - 1;
    no_nul[last] = b'x';
    assert!(HeaderMap::parse(no_nul).is_err());
}
