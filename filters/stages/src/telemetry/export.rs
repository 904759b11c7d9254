//! Export of access log records to an OpenTelemetry collector: a bounded
//! buffer per VM, emptied in batches on the root context's tick through
//! Envoy's HTTP client.

use meshwasm_core::telemetry::otlp::{LogBuffer, export_request};
use meshwasm_core::telemetry::workload::Workload;
use meshwasm_core::telemetry::{OtlpExport, metric};
use meshwasm_plugin::headers::HeaderMapKind;
use meshwasm_plugin::{Log, Metrics};
use proxy_wasm::hostcalls;
use proxy_wasm::types::LogLevel;
use std::cell::RefCell;
use std::collections::HashMap;

/// The exporter of one configuration.
pub(crate) struct Exporter {
    settings: OtlpExport,
    resource: Vec<(String, String)>,
    buffer: RefCell<LogBuffer>,
    /// Records in each export not answered yet, by call token.
    in_flight: RefCell<HashMap<u32, usize>>,
}

fn count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Exporter {
    pub(crate) fn new(settings: &OtlpExport, local: &Workload) -> Exporter {
        let service = settings
            .service_name
            .clone()
            .unwrap_or_else(|| local.canonical_service().to_owned());
        let mut resource = vec![("service.name".to_owned(), service)];
        for (key, value) in [
            ("k8s.namespace.name", &local.namespace),
            ("k8s.pod.name", &local.name),
            ("service.instance.id", &local.name),
        ] {
            if !value.is_empty() {
                resource.push((key.to_owned(), value.clone()));
            }
        }
        Exporter {
            settings: settings.clone(),
            resource,
            buffer: RefCell::new(LogBuffer::new(settings.buffer_size)),
            in_flight: RefCell::new(HashMap::new()),
        }
    }

    /// Queues a record; a full buffer drops it, counted.
    pub(crate) fn push(&self, metrics: &Metrics, record: String) {
        let Ok(mut buffer) = self.buffer.try_borrow_mut() else {
            return;
        };
        if !buffer.push(record) {
            metrics.add(metric::LOG_DROPPED, 1);
        }
    }

    /// Sends what waits, one batch per call, while calls are accepted.
    pub(crate) fn flush(&self, metrics: &Metrics, log: Log) {
        let (Ok(mut buffer), Ok(mut in_flight)) = (
            self.buffer.try_borrow_mut(),
            self.in_flight.try_borrow_mut(),
        ) else {
            return;
        };
        // One export at a time per VM: a slow collector fills the buffer
        // (and drops) instead of piling up calls.
        while in_flight.is_empty() && !buffer.is_empty() {
            let batch = buffer.take_batch(self.settings.batch_size);
            let body = export_request(&self.resource, &batch);
            let s = &self.settings;
            let headers = vec![
                (":method", "POST"),
                (":path", s.path.as_str()),
                (":authority", s.authority.as_str()),
                ("content-type", "application/json"),
            ];
            match hostcalls::dispatch_http_call(
                &s.cluster,
                headers,
                Some(body.as_bytes()),
                Vec::new(),
                s.timeout,
            ) {
                Ok(token) => {
                    in_flight.insert(token, batch.len());
                }
                Err(status) => {
                    metrics.add(metric::LOG_EXPORT_FAILED, count(batch.len()));
                    log.line(
                        LogLevel::Warn,
                        &format!(
                            "exporting access logs to cluster {}: {status:?} (is the cluster defined?)",
                            s.cluster
                        ),
                    );
                    return;
                }
            }
        }
    }

    /// The collector answered an export (no headers: the call failed).
    pub(crate) fn answered(&self, metrics: &Metrics, token: u32, headers: usize) {
        let Some(records) = self
            .in_flight
            .try_borrow_mut()
            .ok()
            .and_then(|mut f| f.remove(&token))
        else {
            return;
        };
        let status = (headers > 0)
            .then(|| hostcalls::get_map_value(HeaderMapKind::HttpCallResponseHeaders, ":status"))
            .and_then(|s| s.ok().flatten());
        let accepted = status.is_some_and(|s| s.starts_with('2'));
        metrics.add(
            if accepted {
                metric::LOG_EXPORTED
            } else {
                metric::LOG_EXPORT_FAILED
            },
            count(records),
        );
    }
}
