//! The headers a request is kept with, and the attribute port the plan's
//! expressions read through.

use meshwasm_core::header_map::HeaderMap;
use meshwasm_core::telemetry::expr::{Attributes, PeerSide};
use meshwasm_core::telemetry::workload::Workload;
use proxy_wasm::hostcalls;
use std::collections::BTreeSet;

/// Headers kept from a map: only those the plan reads, first value each.
#[derive(Debug, Default)]
pub(crate) struct Kept(Vec<(String, String)>);

impl Kept {
    /// The value of `name` (lower case).
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Sets `name`, as the filter did on the host.
    pub(crate) fn set(&mut self, name: &str, value: String) {
        match self.0.iter_mut().find(|(n, _)| n == name) {
            Some(slot) => slot.1 = value,
            None => self.0.push((name.to_owned(), value)),
        }
    }
}

/// The wanted headers of a map read whole.
pub(crate) fn keep(map: &HeaderMap, wanted: &BTreeSet<String>) -> Kept {
    Kept(
        wanted
            .iter()
            .filter_map(|name| Some((name.clone(), map.get(name)?.into_owned())))
            .collect(),
    )
}

/// The attributes of one request, each property read from the host once.
pub(crate) struct Attrs<'a> {
    request: &'a Kept,
    response: &'a Kept,
    downstream: Option<&'a Workload>,
    upstream: Option<&'a Workload>,
    properties: Vec<(Vec<String>, Option<Vec<u8>>)>,
}

impl<'a> Attrs<'a> {
    pub(crate) fn new(
        request: &'a Kept,
        response: &'a Kept,
        downstream: Option<&'a Workload>,
        upstream: Option<&'a Workload>,
    ) -> Self {
        Attrs {
            request,
            response,
            downstream,
            upstream,
            properties: Vec::new(),
        }
    }
}

impl Attributes for Attrs<'_> {
    fn request_header(&mut self, name: &str) -> Option<String> {
        self.request.get(name).map(str::to_owned)
    }

    fn response_header(&mut self, name: &str) -> Option<String> {
        self.response.get(name).map(str::to_owned)
    }

    fn peer(&mut self, side: PeerSide) -> Option<&Workload> {
        match side {
            PeerSide::Downstream => self.downstream,
            PeerSide::Upstream => self.upstream,
        }
    }

    fn property(&mut self, path: &[String]) -> Option<Vec<u8>> {
        if let Some((_, value)) = self.properties.iter().find(|(p, _)| p == path) {
            return value.clone();
        }
        let value = hostcalls::get_property(path.iter().map(String::as_str).collect())
            .ok()
            .flatten();
        self.properties.push((path.to_vec(), value.clone()));
        value
    }
}
