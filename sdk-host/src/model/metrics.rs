//! Metrics, with Envoy's ids and rules.

use super::state::HostState;
use crate::proxy::MetricValue;
use crate::types::{MetricType, Status};

impl HostState {
    /// Envoy numbers metrics by kind: counters 4, 8, ...; gauges 5, 9, ...;
    /// histograms 6, 10, ... Defining a name again gives a new id for the
    /// same stat.
    pub(crate) fn define_metric(&mut self, kind: u32, name: &[u8]) -> Result<u32, Status> {
        let kind = MetricType::from_u32(kind).ok_or(Status::BadArgument)?;
        let name = String::from_utf8_lossy(name).into_owned();
        self.proxy.lock().define_metric(&name, kind);
        let id = (self.metric_ids.len() as u32 + 1) * 4 + kind as u32;
        self.metric_ids.push((name, kind));
        Ok(id)
    }

    fn metric_of(&self, id: u32) -> Result<(String, MetricType), Status> {
        let kind = MetricType::from_u32(id & 3).ok_or(Status::NotFound)?;
        let index = (id / 4).checked_sub(1).ok_or(Status::NotFound)? as usize;
        match self.metric_ids.get(index) {
            Some((name, defined)) if *defined == kind => Ok((name.clone(), kind)),
            _ => Err(Status::NotFound),
        }
    }

    pub(crate) fn increment_metric(&mut self, id: u32, offset: i64) -> Result<(), Status> {
        let (name, kind) = self.metric_of(id)?;
        let mut proxy = self.proxy.lock();
        match proxy.metric(&name, kind).ok_or(Status::NotFound)? {
            // Envoy refuses to "increment" a counter by zero or less.
            MetricValue::Counter(_) if offset <= 0 => return Err(Status::BadArgument),
            MetricValue::Counter(value) => *value = value.saturating_add(offset as u64),
            MetricValue::Gauge(value) => *value = value.saturating_add(offset),
            MetricValue::Histogram(_) => return Err(Status::BadArgument),
        }
        Ok(())
    }

    /// Recording adds to a counter (Envoy's behaviour), sets a gauge and
    /// records a histogram value.
    pub(crate) fn record_metric(&mut self, id: u32, value: u64) -> Result<(), Status> {
        let (name, kind) = self.metric_of(id)?;
        let mut proxy = self.proxy.lock();
        match proxy.metric(&name, kind).ok_or(Status::NotFound)? {
            MetricValue::Counter(total) => *total = total.saturating_add(value),
            MetricValue::Gauge(current) => *current = value as i64,
            MetricValue::Histogram(values) => values.push(value),
        }
        Ok(())
    }

    pub(crate) fn get_metric(&self, id: u32) -> Result<u64, Status> {
        let (name, kind) = self.metric_of(id)?;
        let mut proxy = self.proxy.lock();
        match proxy.metric(&name, kind).ok_or(Status::NotFound)? {
            MetricValue::Counter(total) => Ok(*total),
            MetricValue::Gauge(current) => Ok(*current as u64),
            MetricValue::Histogram(_) => Err(Status::BadArgument),
        }
    }
}
