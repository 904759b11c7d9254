//! The metrics a plan reports: counters, gauges and histograms, with
//! labels, over a small port to the host's `define_metric`.
//!
//! A plan declares its metrics once ([`MetricSpec`]); the filter defines
//! them through [`MetricTable::define`] and updates them by the
//! [`MetricRef`] the plan hands out. A metric with labels is a family of
//! series, one per combination of label values, each defined on the host
//! the first time it is used. Its stat name carries the labels in Istio's
//! encoding (`reporter=.=source;.;istio_requests_total`), which Envoy's
//! `stats_config.stats_tags` turn into Prometheus labels. A family holds a
//! bounded number of series, so client input cannot grow the host's stats
//! without end: past the bound, new combinations go to one series whose
//! every label is `other`, and the overflow is counted.

use std::collections::BTreeMap;

/// What the host keeps for a metric, as Proxy-Wasm's `MetricType` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// Only goes up.
    Counter,
    /// Goes up and down.
    Gauge,
    /// A distribution of recorded values.
    Histogram,
}

/// The series a family keeps at most unless its spec says otherwise.
pub const DEFAULT_MAX_SERIES: usize = 1000;

/// The label value of the series that takes what a full family overflows.
pub const OVERFLOW_VALUE: &str = "other";

/// One metric a plan reports: its kind, name and label names.
///
/// # Examples
///
/// ```
/// use meshwasm_core::metrics::MetricSpec;
///
/// let plain = MetricSpec::counter("meshwasm.fault.aborts_injected");
/// assert_eq!(plain.series_name(&[]), "meshwasm.fault.aborts_injected");
///
/// let labelled = MetricSpec::counter("istio_requests_total").with_labels(["reporter", "response_code"]);
/// assert_eq!(
///     labelled.series_name(&["source", "200"]),
///     "reporter=.=source;.;response_code=.=200;.;istio_requests_total"
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricSpec {
    kind: MetricKind,
    name: String,
    labels: Vec<String>,
    max_series: usize,
}

impl MetricSpec {
    /// A counter without labels.
    pub fn counter(name: impl Into<String>) -> Self {
        Self::new(MetricKind::Counter, name)
    }

    /// A gauge without labels.
    pub fn gauge(name: impl Into<String>) -> Self {
        Self::new(MetricKind::Gauge, name)
    }

    /// A histogram without labels.
    pub fn histogram(name: impl Into<String>) -> Self {
        Self::new(MetricKind::Histogram, name)
    }

    fn new(kind: MetricKind, name: impl Into<String>) -> Self {
        MetricSpec {
            kind,
            name: name.into(),
            labels: Vec::new(),
            max_series: DEFAULT_MAX_SERIES,
        }
    }

    /// The same metric with these label names, in this order.
    #[must_use]
    pub fn with_labels<L: Into<String>>(mut self, labels: impl IntoIterator<Item = L>) -> Self {
        self.labels = labels.into_iter().map(Into::into).collect();
        self
    }

    /// The same metric keeping at most `max` distinct series (at least 1).
    #[must_use]
    pub fn with_max_series(mut self, max: usize) -> Self {
        self.max_series = max.max(1);
        self
    }

    /// The kind.
    pub fn kind(&self) -> MetricKind {
        self.kind
    }

    /// The name, without labels.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The label names.
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// The host's name for the series with these label values: the name
    /// alone without labels, else `LABEL=.=VALUE;.;` for each label, then
    /// the name. A `;` in a value becomes `_`, so that a value cannot end
    /// its label early.
    pub fn series_name(&self, values: &[&str]) -> String {
        let mut name = String::new();
        for (label, value) in self.labels.iter().zip(values) {
            name.push_str(label);
            name.push_str("=.=");
            name.extend(value.chars().map(|c| if c == ';' { '_' } else { c }));
            name.push_str(";.;");
        }
        name.push_str(&self.name);
        name
    }
}

/// A metric of a plan, by its place in the plan's [`metrics`](crate::plan::Plan::metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MetricRef(pub usize);

/// The host side of metrics: Proxy-Wasm's `define_metric`,
/// `increment_metric` and `record_metric`. Refused calls are the host's
/// business: a metric is never worth failing a request for.
pub trait MetricHost {
    /// Defines a metric (the same name gives the same id), or `None` if the
    /// host refuses.
    fn define(&mut self, kind: MetricKind, name: &str) -> Option<u32>;
    /// Adds `offset` to a counter or gauge.
    fn increment(&mut self, id: u32, offset: i64);
    /// Records a histogram value, or sets a gauge.
    fn record(&mut self, id: u32, value: u64);
}

/// A plan's metrics, defined on the host: label-free ones at once, each
/// series of a labelled family when it is first used.
///
/// # Examples
///
/// ```
/// use meshwasm_core::metrics::{MetricHost, MetricKind, MetricRef, MetricSpec, MetricTable};
///
/// #[derive(Default)]
/// struct Stats(Vec<(String, i64)>);
/// impl MetricHost for Stats {
///     fn define(&mut self, _: MetricKind, name: &str) -> Option<u32> {
///         self.0.push((name.to_owned(), 0));
///         Some(self.0.len() as u32 - 1)
///     }
///     fn increment(&mut self, id: u32, offset: i64) { self.0[id as usize].1 += offset; }
///     fn record(&mut self, id: u32, value: u64) { self.0[id as usize].1 = value as i64; }
/// }
///
/// let mut stats = Stats::default();
/// let specs = vec![
///     MetricSpec::counter("requests"),
///     MetricSpec::counter("by_code").with_labels(["code"]).with_max_series(2),
/// ];
/// let mut table = MetricTable::define(specs, &mut stats);
/// table.add(&mut stats, MetricRef(0), 1);
/// for code in ["200", "404", "500", "503"] {
///     table.add_series(&mut stats, MetricRef(1), &[code], 1);
/// }
/// assert_eq!(stats.0, [
///     ("requests".to_owned(), 1),
///     ("code=.=200;.;by_code".to_owned(), 1),
///     ("code=.=404;.;by_code".to_owned(), 1),
///     ("code=.=other;.;by_code".to_owned(), 2),
/// ]);
/// assert_eq!(table.overflowed(MetricRef(1)), 2);
/// ```
#[derive(Debug, Default)]
pub struct MetricTable {
    families: Vec<Family>,
}

/// One series of a family: its label values and its host id, `None`
/// where the host refused to define it.
type Series = (Vec<String>, Option<u32>);

#[derive(Debug)]
struct Family {
    spec: MetricSpec,
    /// The host id of a label-free metric, defined at once.
    id: Option<u32>,
    /// The series of a labelled one by a hash of their label values.
    series: BTreeMap<u64, Vec<Series>>,
    count: usize,
    overflow: Option<Option<u32>>,
    overflowed: u64,
}

impl MetricTable {
    /// Defines the label-free metrics of `specs` on the host now.
    pub fn define(specs: Vec<MetricSpec>, host: &mut impl MetricHost) -> Self {
        let families = specs
            .into_iter()
            .map(|spec| Family {
                id: spec
                    .labels
                    .is_empty()
                    .then(|| host.define(spec.kind, &spec.name))
                    .flatten(),
                spec,
                series: BTreeMap::new(),
                count: 0,
                overflow: None,
                overflowed: 0,
            })
            .collect();
        MetricTable { families }
    }

    /// Adds `offset` to a label-free counter or gauge: one host call, no
    /// lookup. A labelled metric takes [`add_series`](Self::add_series).
    pub fn add(&self, host: &mut impl MetricHost, metric: MetricRef, offset: i64) {
        if let Some(id) = self.families.get(metric.0).and_then(|f| f.id) {
            host.increment(id, offset);
        }
    }

    /// Records `value` in a label-free histogram (or sets a gauge).
    pub fn record(&self, host: &mut impl MetricHost, metric: MetricRef, value: u64) {
        if let Some(id) = self.families.get(metric.0).and_then(|f| f.id) {
            host.record(id, value);
        }
    }

    /// Adds `offset` to the series of a labelled `metric` with these label
    /// values, defining it on first use. Values beyond the label names are
    /// ignored and missing ones read as empty.
    pub fn add_series(
        &mut self,
        host: &mut impl MetricHost,
        metric: MetricRef,
        labels: &[&str],
        offset: i64,
    ) {
        if let Some(id) = self.series(host, metric, labels) {
            host.increment(id, offset);
        }
    }

    /// Records `value` in the series of a labelled histogram.
    pub fn record_series(
        &mut self,
        host: &mut impl MetricHost,
        metric: MetricRef,
        labels: &[&str],
        value: u64,
    ) {
        if let Some(id) = self.series(host, metric, labels) {
            host.record(id, value);
        }
    }

    /// How many updates of every metric went to overflow series.
    pub fn total_overflowed(&self) -> u64 {
        self.families.iter().map(|f| f.overflowed).sum()
    }

    /// How many updates of `metric` went to its overflow series.
    pub fn overflowed(&self, metric: MetricRef) -> u64 {
        self.families.get(metric.0).map_or(0, |f| f.overflowed)
    }

    fn series(
        &mut self,
        host: &mut impl MetricHost,
        metric: MetricRef,
        labels: &[&str],
    ) -> Option<u32> {
        self.resolve(host, metric, labels).0
    }

    /// The host id of the series of a labelled `metric` with these label
    /// values, defined at its first use, and whether it is the family's
    /// overflow series: what a caller that keeps ids across updates needs.
    pub fn resolve(
        &mut self,
        host: &mut impl MetricHost,
        metric: MetricRef,
        labels: &[&str],
    ) -> (Option<u32>, bool) {
        let Some(family) = self.families.get_mut(metric.0) else {
            return (None, false);
        };
        let wanted = family.spec.labels.len();
        if wanted == 0 {
            return (family.id, false);
        }
        let values = || (0..wanted).map(|i| labels.get(i).copied().unwrap_or(""));
        let hash = hash_values(values());
        let known = family.series.get(&hash).and_then(|bucket| {
            bucket
                .iter()
                .find(|(key, _)| key.iter().map(String::as_str).eq(values()))
        });
        if let Some((_, id)) = known {
            return (*id, false);
        }
        if family.count >= family.spec.max_series {
            family.overflowed += 1;
            let spec = &family.spec;
            let id = *family.overflow.get_or_insert_with(|| {
                let other = vec![OVERFLOW_VALUE; wanted];
                host.define(spec.kind, &spec.series_name(&other))
            });
            return (id, true);
        }
        let key: Vec<&str> = values().collect();
        let id = host.define(family.spec.kind, &family.spec.series_name(&key));
        family
            .series
            .entry(hash)
            .or_default()
            .push((key.into_iter().map(str::to_owned).collect(), id));
        family.count += 1;
        (id, false)
    }
}

/// FNV-1a over the values, each followed by a byte no UTF-8 text holds,
/// so that `["ab", ""]` and `["a", "b"]` differ.
fn hash_values<'a>(values: impl Iterator<Item = &'a str>) -> u64 {
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for value in values {
        for byte in value.bytes().chain([0xff]) {
            hash = (hash ^ u64::from(byte)).wrapping_mul(PRIME);
        }
    }
    hash
}
