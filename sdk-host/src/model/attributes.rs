//! The attributes Envoy computes from the stream rather than stores:
//! `request.*` from the request headers, `response.*`, `plugin_*`, and the
//! connection defaults a test can override with [`crate::HostBuilder::property`].

use super::state::{HostState, HttpStream};
use crate::headers::HeaderMap;
use crate::properties::{PropertyPath, PropertyValue};
use crate::types::Status;

impl HostState {
    pub(crate) fn get_property(&self, path: &PropertyPath) -> Result<Vec<u8>, Status> {
        let context = self.effective;
        let stream_store = self
            .http
            .get(&context)
            .map(|s| &s.properties)
            .or_else(|| self.tcp.get(&context).map(|s| &s.properties));
        if let Some(value) = stream_store.and_then(|store| store.get(path)) {
            return Ok(value.encode());
        }
        if let Some(value) = derived(self, context, path) {
            return Ok(value.encode());
        }
        self.properties
            .get(path)
            .map(|v| v.encode())
            .ok_or(Status::NotFound)
    }

    pub(crate) fn set_property(&mut self, path: PropertyPath, value: &[u8]) -> Result<(), Status> {
        let context = self.effective;
        let value = PropertyValue::Bytes(value.to_vec());
        if let Some(stream) = self.http.get_mut(&context) {
            stream.properties.set(path, value);
        } else if let Some(stream) = self.tcp.get_mut(&context) {
            stream.properties.set(path, value);
        } else {
            // Envoy keeps these in the stream's filter state; a root
            // context has none.
            return Err(Status::NotFound);
        }
        Ok(())
    }
}

/// The value Envoy would give `path` in `context`, if it derives one.
pub(crate) fn derived(state: &HostState, context: u32, path: &[String]) -> Option<PropertyValue> {
    let segments: Vec<&str> = path.iter().map(String::as_str).collect();
    if let [name] = segments.as_slice() {
        let root = state.root_of(context)?;
        let plugin = state.plugin_of_root(root)?;
        return match *name {
            "plugin_name" => Some(plugin.name.as_str().into()),
            "plugin_root_id" => Some(plugin.root_id.as_str().into()),
            "plugin_vm_id" => Some(state.settings.vm_id.as_str().into()),
            _ => None,
        };
    }
    let stream = state.http.get(&context)?;
    match segments.as_slice() {
        ["request", rest @ ..] => request(state, stream, rest),
        ["response", rest @ ..] => response(stream, rest),
        _ => None,
    }
}

/// A header as Envoy's attributes give it: every value, joined with `,`.
fn header(map: Option<&HeaderMap>, name: &str) -> Option<PropertyValue> {
    let name = name.to_ascii_lowercase();
    let values: Vec<&[u8]> = map?
        .iter()
        .filter(|(key, _)| *key == name)
        .map(|(_, value)| value)
        .collect();
    (!values.is_empty()).then(|| PropertyValue::Bytes(values.join(&b","[..])))
}

fn request(state: &HostState, stream: &HttpStream, rest: &[&str]) -> Option<PropertyValue> {
    let headers = stream.request.headers.as_ref();
    let body_size = (stream.request.forwarded.body.len() + stream.request.body.len()) as i64;
    Some(match rest {
        ["path"] => header(headers, ":path")?,
        ["url_path"] => {
            let path = headers?.get_bytes(":path")?;
            let end = path.iter().position(|b| *b == b'?').unwrap_or(path.len());
            PropertyValue::Bytes(path[..end].to_vec())
        }
        ["host"] => header(headers, ":authority")?,
        ["scheme"] => header(headers, ":scheme")?,
        ["method"] => header(headers, ":method")?,
        ["referer"] => header(headers, "referer")?,
        ["useragent"] => header(headers, "user-agent")?,
        ["id"] => header(headers, "x-request-id")?,
        ["query"] => {
            let path = headers?.get_bytes(":path")?;
            let start = path.iter().position(|b| *b == b'?')? + 1;
            PropertyValue::Bytes(path[start..].to_vec())
        }
        ["headers"] => PropertyValue::Map(headers?.clone()),
        ["headers", name] => header(headers, name)?,
        ["time"] => PropertyValue::Nanos((state.realtime_base_nanos + stream.started_nanos) as i64),
        ["duration"] => {
            PropertyValue::Nanos(state.monotonic_nanos.saturating_sub(stream.started_nanos) as i64)
        }
        ["size"] => PropertyValue::Int(body_size),
        ["total_size"] => PropertyValue::Int(body_size + headers?.byte_size() as i64),
        ["protocol"] => PropertyValue::from("HTTP/1.1"),
        _ => return None,
    })
}

fn response(stream: &HttpStream, rest: &[&str]) -> Option<PropertyValue> {
    let headers = stream.response.headers.as_ref();
    Some(match rest {
        ["code"] => {
            let code = headers?.get(":status")?.parse::<i64>().ok()?;
            PropertyValue::Int(code)
        }
        ["code_details"] => match &stream.local_response {
            Some(local) => PropertyValue::from(local.details.as_str()),
            None if headers.is_some() => PropertyValue::from("via_upstream"),
            None => return None,
        },
        ["headers"] => PropertyValue::Map(headers?.clone()),
        ["headers", name] => header(headers, name)?,
        ["trailers"] => PropertyValue::Map(stream.response.trailers.clone()?),
        ["trailers", name] => header(stream.response.trailers.as_ref(), name)?,
        ["size"] => PropertyValue::Int(
            (stream.response.forwarded.body.len() + stream.response.body.len()) as i64,
        ),
        _ => return None,
    })
}

/// The connection and node attributes every host starts with; a test
/// overrides any of them with a property of the same path.
pub(crate) fn defaults() -> Vec<(Vec<String>, PropertyValue)> {
    let path = |p: &str| p.split('.').map(str::to_string).collect::<Vec<_>>();
    vec![
        (path("source.address"), "127.0.0.1:54321".into()),
        (path("source.port"), PropertyValue::Int(54321)),
        (path("destination.address"), "127.0.0.1:10000".into()),
        (path("destination.port"), PropertyValue::Int(10000)),
        (path("connection.mtls"), PropertyValue::Bool(false)),
        (path("xds.node.id"), "sdk-host".into()),
        (path("xds.node.cluster"), "sdk-host".into()),
        (
            path("xds.node.metadata"),
            PropertyValue::Map(HeaderMap::default()),
        ),
    ]
}
