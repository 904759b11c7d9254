//! Header maps: which map a call reaches, and when Envoy exposes it.

use super::state::HostState;
use crate::headers::HeaderMap;
use crate::types::{Callback, MapType, Status};

impl HostState {
    /// The map a read addresses, as Envoy exposes it now: stream maps only
    /// from their callback until it continues (or while it is paused), and
    /// in `proxy_on_log`; callout and gRPC maps only in their callbacks.
    pub(crate) fn map(&mut self, kind: u32, call: &'static str) -> Result<MapAccess, Status> {
        let kind = MapType::from_u32(kind).ok_or(Status::BadArgument)?;
        let context = self.effective;
        let log_phase = self.callback == Some(Callback::Log);
        let data = &self.callback_data;
        let map = match kind {
            MapType::GrpcReceiveInitialMetadata => data.grpc_initial.clone(),
            MapType::GrpcReceiveTrailingMetadata => data.grpc_trailing.clone(),
            MapType::HttpCallResponseHeaders => data.call_headers.clone(),
            MapType::HttpCallResponseTrailers => data.call_trailers.clone(),
            stream_map => {
                let (request, trailers) = stream_map_of(stream_map);
                let Some(stream) = self.http.get(&context) else {
                    return Ok(MapAccess::Unavailable { log_phase });
                };
                let flow = if request {
                    &stream.request
                } else {
                    &stream.response
                };
                let (map, visible) = if trailers {
                    (&flow.trailers, flow.trailers_visible)
                } else {
                    (&flow.headers, flow.headers_visible)
                };
                // The access-log phase reads Envoy's own copies, which have
                // no request trailers.
                let readable = if log_phase {
                    stream_map != MapType::HttpRequestTrailers
                } else {
                    visible
                };
                if readable {
                    map.clone()
                } else {
                    if !log_phase && map.is_some() {
                        self.violation(
                            call,
                            format!("{stream_map:?} read after the callback that showed them continued: Envoy no longer exposes them (BadArgument, or an empty map from proxy_get_header_map_pairs)"),
                        );
                    }
                    None
                }
            }
        };
        Ok(match map {
            Some(map) => MapAccess::Map(map),
            None => MapAccess::Unavailable { log_phase },
        })
    }

    /// A map the guest changes: a stream map while it is exposed. Trailers
    /// may be added from the last body callback, as Envoy allows.
    pub(crate) fn map_mut(
        &mut self,
        kind: u32,
        call: &'static str,
    ) -> Result<&mut HeaderMap, Status> {
        let map_type = MapType::from_u32(kind).ok_or(Status::BadArgument)?;
        let context = self.effective;
        let callback = self.callback;
        let refuse = |state: &mut HostState, why: String| {
            state.violation(call, why);
            Err(Status::BadArgument)
        };
        if matches!(
            map_type,
            MapType::GrpcReceiveInitialMetadata
                | MapType::GrpcReceiveTrailingMetadata
                | MapType::HttpCallResponseHeaders
                | MapType::HttpCallResponseTrailers
        ) {
            return refuse(
                self,
                format!("{map_type:?} are read-only in Envoy (BadArgument)"),
            );
        }
        if callback == Some(Callback::Log) {
            return refuse(
                self,
                format!("{map_type:?} changed in proxy_on_log: the stream is over (BadArgument)"),
            );
        }
        let (request, trailers) = stream_map_of(map_type);
        let Some(stream) = self.http.get(&context) else {
            return refuse(
                self,
                format!("{map_type:?} changed outside an HTTP stream (BadArgument)"),
            );
        };
        let flow = if request {
            &stream.request
        } else {
            &stream.response
        };
        let body_callback = if request {
            Callback::RequestBody
        } else {
            Callback::ResponseBody
        };
        let adding_trailers = trailers
            && flow.trailers.is_none()
            && flow.end_of_stream
            && callback == Some(body_callback);
        let visible = if trailers {
            flow.trailers_visible
        } else {
            flow.headers_visible
        };
        if !visible && !adding_trailers {
            return refuse(
                self,
                format!(
                    "{map_type:?} changed after the callback that showed them continued: Envoy no longer exposes them (BadArgument)"
                ),
            );
        }
        let flow = self.http_flow_mut(context, request)?;
        let map = if trailers {
            if adding_trailers {
                flow.trailers_visible = true;
            }
            flow.trailers.get_or_insert_with(HeaderMap::default)
        } else {
            flow.headers.get_or_insert_with(HeaderMap::default)
        };
        Ok(map)
    }

    pub(crate) fn set_map_pairs(&mut self, kind: u32, serialized: &[u8]) -> Result<(), Status> {
        let map = parse_pairs(serialized);
        *self.map_mut(kind, "proxy_set_header_map_pairs")? = map;
        Ok(())
    }
}

/// (request?, trailers?) of a stream map type.
fn stream_map_of(kind: MapType) -> (bool, bool) {
    match kind {
        MapType::HttpRequestHeaders => (true, false),
        MapType::HttpRequestTrailers => (true, true),
        MapType::HttpResponseHeaders => (false, false),
        _ => (false, true),
    }
}

/// What a map read finds.
pub(crate) enum MapAccess {
    /// The map, as it is now.
    Map(HeaderMap),
    /// Not exposed here; in `proxy_on_log` Envoy says NotFound, elsewhere BadArgument.
    Unavailable { log_phase: bool },
}

/// Reads a serialized map as Envoy does: anything malformed is an empty map.
pub(crate) fn parse_pairs(bytes: &[u8]) -> HeaderMap {
    HeaderMap::deserialize(bytes).unwrap_or_default()
}
