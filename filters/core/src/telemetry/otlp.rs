//! Access log export to an OpenTelemetry collector over OTLP/HTTP, JSON
//! encoding (`POST /v1/logs`). Entries wait in a bounded buffer per VM
//! and leave in batches; when the collector is slow or down, new entries
//! are dropped and counted rather than held without end.

use serde_json::{Value, json};
use std::collections::VecDeque;

/// Entries waiting for export, at most `capacity` of them.
///
/// # Examples
///
/// ```
/// use meshwasm_core::telemetry::otlp::LogBuffer;
///
/// let mut buffer = LogBuffer::new(2);
/// assert!(buffer.push("a".into()));
/// assert!(buffer.push("b".into()));
/// assert!(!buffer.push("c".into()));
/// assert_eq!(buffer.dropped(), 1);
/// assert_eq!(buffer.take_batch(10), ["a", "b"]);
/// assert!(buffer.is_empty());
/// ```
#[derive(Debug)]
pub struct LogBuffer {
    capacity: usize,
    records: VecDeque<String>,
    dropped: u64,
}

impl LogBuffer {
    /// A buffer of at most `capacity` records.
    pub fn new(capacity: usize) -> LogBuffer {
        LogBuffer {
            capacity,
            records: VecDeque::new(),
            dropped: 0,
        }
    }

    /// Queues one record (an OTLP `LogRecord` as JSON); false, and
    /// counted, when the buffer is full.
    pub fn push(&mut self, record: String) -> bool {
        if self.records.len() >= self.capacity {
            self.dropped += 1;
            return false;
        }
        self.records.push_back(record);
        true
    }

    /// Takes up to `max` records, the oldest first.
    pub fn take_batch(&mut self, max: usize) -> Vec<String> {
        let n = max.min(self.records.len());
        self.records.drain(..n).collect()
    }

    /// Records waiting.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Records dropped because the buffer was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }
}

/// One OTLP `LogRecord`: the entry as its body, its fields as string
/// attributes, and the trace it belongs to.
///
/// # Examples
///
/// ```
/// use meshwasm_core::telemetry::otlp::log_record;
///
/// let record = log_record(1_700_000_000_000_000_000, "GET / 200", &[("response_code".into(), "200".into())], None);
/// let v: serde_json::Value = serde_json::from_str(&record).unwrap();
/// assert_eq!(v["timeUnixNano"], "1700000000000000000");
/// assert_eq!(v["body"]["stringValue"], "GET / 200");
/// assert_eq!(v["attributes"][0]["value"]["stringValue"], "200");
/// ```
pub fn log_record(
    time_nanos: i64,
    body: &str,
    attributes: &[(String, String)],
    trace: Option<(&str, &str)>,
) -> String {
    let attributes: Vec<Value> = attributes
        .iter()
        .map(|(k, v)| json!({"key": k, "value": {"stringValue": v}}))
        .collect();
    let mut record = json!({
        "timeUnixNano": time_nanos.to_string(),
        "observedTimeUnixNano": time_nanos.to_string(),
        "severityNumber": 9,
        "severityText": "INFO",
        "body": {"stringValue": body},
        "attributes": attributes,
    });
    if let Some((trace_id, span_id)) = trace {
        record["traceId"] = Value::String(trace_id.to_owned());
        record["spanId"] = Value::String(span_id.to_owned());
    }
    record.to_string()
}

/// The trace and span id of a W3C `traceparent`, if it is well formed.
pub fn trace_of(traceparent: &str) -> Option<(&str, &str)> {
    let mut parts = traceparent.split('-');
    let (_version, trace, span) = (parts.next()?, parts.next()?, parts.next()?);
    let hex = |s: &str, len| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hex(trace, 32) && hex(span, 16)).then_some((trace, span))
}

/// The body of an export: `ExportLogsServiceRequest` with one resource
/// (`service.name` and the workload's attributes) and one scope.
///
/// # Examples
///
/// ```
/// use meshwasm_core::telemetry::otlp::export_request;
///
/// let body = export_request(&[("service.name".into(), "ratings".into())], &["{\"body\":{}}".to_owned()]);
/// let v: serde_json::Value = serde_json::from_str(&body).unwrap();
/// let logs = &v["resourceLogs"][0];
/// assert_eq!(logs["resource"]["attributes"][0]["value"]["stringValue"], "ratings");
/// assert_eq!(logs["scopeLogs"][0]["scope"]["name"], "meshwasm-telemetry");
/// assert_eq!(logs["scopeLogs"][0]["logRecords"].as_array().unwrap().len(), 1);
/// ```
pub fn export_request(resource: &[(String, String)], records: &[String]) -> String {
    let resource: Vec<Value> = resource
        .iter()
        .map(|(k, v)| json!({"key": k, "value": {"stringValue": v}}))
        .collect();
    // The records are JSON already: spliced in rather than parsed again.
    let head = json!({
        "resource": {"attributes": resource},
    })
    .to_string();
    let head = head.strip_suffix('}').unwrap_or(&head);
    format!(
        "{{\"resourceLogs\":[{head},\"scopeLogs\":[{{\"scope\":{{\"name\":\"meshwasm-telemetry\",\"version\":\"{}\"}},\"logRecords\":[{}]}}]}}]}}",
        env!("CARGO_PKG_VERSION"),
        records.join(",")
    )
}
