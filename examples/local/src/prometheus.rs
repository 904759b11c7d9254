//! Envoy's `/stats/prometheus`, read: the series of each metric with their
//! labels, for the demo's tables and the tests' counts.
//!
//! ```
//! use meshwasm_local::prometheus::{parse, total};
//!
//! let text = "# TYPE istio_requests_total counter\n\
//!     istio_requests_total{reporter=\"destination\",response_code=\"200\"} 7\n\
//!     istio_requests_total{reporter=\"destination\",response_code=\"503\"} 2\n";
//! let stats = parse(text);
//! assert_eq!(total(&stats, "istio_requests_total", &[]), 9.0);
//! assert_eq!(total(&stats, "istio_requests_total", &[("response_code", "503")]), 2.0);
//! ```

use std::collections::BTreeMap;

/// One series: its labels and its value.
pub type Series = (BTreeMap<String, String>, f64);

/// Parses Prometheus' text format: each metric's name to its series.
/// Label values are taken as Envoy writes them (it escapes none of the
/// characters Istio's label values hold).
pub fn parse(text: &str) -> BTreeMap<String, Vec<Series>> {
    let mut out: BTreeMap<String, Vec<Series>> = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let Some((head, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (name, labels) = match head.split_once('{') {
            Some((name, rest)) => (name, rest.strip_suffix('}').unwrap_or(rest)),
            None => (head, ""),
        };
        let mut map = BTreeMap::new();
        let mut rest = labels;
        while let Some((key, after)) = rest.split_once("=\"") {
            let end = after.find("\",").unwrap_or(after.len().saturating_sub(1));
            map.insert(
                key.trim_start_matches(',').to_owned(),
                after[..end].to_owned(),
            );
            rest = after.get(end + 2..).unwrap_or("");
        }
        out.entry(name.to_owned())
            .or_default()
            .push((map, value.parse().unwrap_or(f64::NAN)));
    }
    out
}

/// The sum of the series of `metric` whose labels include all of `want`.
pub fn total(stats: &BTreeMap<String, Vec<Series>>, metric: &str, want: &[(&str, &str)]) -> f64 {
    stats.get(metric).map_or(0.0, |series| {
        series
            .iter()
            .filter(|(labels, _)| {
                want.iter()
                    .all(|(k, v)| labels.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, v)| v)
            .sum()
    })
}
