//! Durations and percentages as Istio writes them.

use meshwasm_core::duration::{DurationError, parse_duration};
use meshwasm_core::percent::{PerMillion, Rng};
use std::time::Duration;
use wasm_bindgen_test::wasm_bindgen_test;

#[wasm_bindgen_test(unsupported = test)]
fn durations_in_istio_and_go_syntax() {
    let ms = Duration::from_millis;
    assert_eq!(parse_duration("2s"), Ok(ms(2000)));
    assert_eq!(parse_duration("500ms"), Ok(ms(500)));
    assert_eq!(parse_duration("1.5s"), Ok(ms(1500)));
    assert_eq!(parse_duration("1m"), Ok(ms(60_000)));
    assert_eq!(parse_duration("1h2m3.5s"), Ok(ms(3_723_500)));
    assert_eq!(parse_duration(".5s"), Ok(ms(500)));
    assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
    assert_eq!(parse_duration("10us"), Ok(Duration::from_micros(10)));
    assert_eq!(parse_duration("10µs"), Ok(Duration::from_micros(10)));
    assert_eq!(parse_duration("+3ns"), Ok(Duration::from_nanos(3)));
}

#[wasm_bindgen_test(unsupported = test)]
fn bad_durations_say_why() {
    assert_eq!(parse_duration(""), Err(DurationError::Empty));
    assert_eq!(
        parse_duration("-1s"),
        Err(DurationError::Negative("-1s".into()))
    );
    assert_eq!(
        parse_duration("5"),
        Err(DurationError::MissingUnit("5".into()))
    );
    assert!(
        matches!(parse_duration("5d"), Err(DurationError::UnknownUnit { unit, .. }) if unit == "d")
    );
    assert_eq!(parse_duration("s"), Err(DurationError::Invalid("s".into())));
    assert_eq!(
        parse_duration("1.2.3s"),
        Err(DurationError::MissingUnit("1.2.3s".into()))
    );
    assert!(matches!(
        parse_duration("9999999999h"),
        Err(DurationError::Overflow(_))
    ));
}

#[wasm_bindgen_test(unsupported = test)]
fn percentages_convert_as_istio_does() {
    assert_eq!(PerMillion::from_percent(0.1).unwrap().numerator(), 1_000);
    assert_eq!(PerMillion::from_percent(100.0).unwrap(), PerMillion::ALWAYS);
    assert_eq!(PerMillion::from_percent(0.0001).unwrap().numerator(), 1);
    // Istio truncates value * 10000 to an integer.
    assert_eq!(PerMillion::from_percent(0.00009).unwrap(), PerMillion::ZERO);
    assert!(PerMillion::from_percent(f64::NAN).is_err());
    assert_eq!(PerMillion::from_whole_percent(250), PerMillion::ALWAYS);
}

#[wasm_bindgen_test(unsupported = test)]
fn sampling_follows_the_fraction() {
    let mut rng = Rng::with_seed(0x5eed);
    let draws = 1_000_000;
    let tenth = PerMillion::from_percent(0.1).unwrap();
    let hits = (0..draws).filter(|_| tenth.sample(&mut rng)).count();
    // Binomial(1e6, 0.001): mean 1000, sd 31.6; six sd either way.
    assert!((810..=1190).contains(&hits), "0.1 % gave {hits} in {draws}");
    assert!((0..1000).all(|_| PerMillion::ALWAYS.sample(&mut rng)));
    assert!((0..1000).all(|_| !PerMillion::ZERO.sample(&mut rng)));
}
