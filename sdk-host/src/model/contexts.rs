//! Contexts, ticks and foreign functions: `proxy_set_tick_period_milliseconds`,
//! `proxy_set_effective_context`, `proxy_done`, `proxy_call_foreign_function`.

use super::state::{ContextKind, Deferred, HostState};
use crate::types::Status;

impl HostState {
    pub(crate) fn set_tick_period(&mut self, period_ms: u32) -> Result<(), Status> {
        let root = self.root_of(self.effective).ok_or(Status::BadArgument)?;
        let now = self.monotonic_nanos;
        let plugin = self.plugin_of_root_mut(root).ok_or(Status::BadArgument)?;
        plugin.tick_period_ms = period_ms;
        plugin.next_tick_nanos =
            (period_ms > 0).then(|| now.saturating_add(u64::from(period_ms) * 1_000_000));
        Ok(())
    }

    pub(crate) fn set_effective_context(&mut self, context: u32) -> Result<(), Status> {
        let live = match self.contexts.get(&context) {
            Some(ContextKind::Root) => true,
            Some(ContextKind::Http) => self.http.get(&context).is_some_and(|s| !s.finished),
            Some(ContextKind::Tcp) => self.tcp.get(&context).is_some_and(|s| !s.finished),
            None => false,
        };
        if !live {
            return Err(Status::BadArgument);
        }
        self.effective = context;
        Ok(())
    }

    pub(crate) fn done(&mut self) -> Result<(), Status> {
        let context = self.effective;
        let plugin = self.plugin_of_root_mut(context).ok_or(Status::NotFound)?;
        if !plugin.done_pending {
            return Err(Status::NotFound);
        }
        plugin.done_pending = false;
        self.deferred.push(Deferred::DeleteRoot(context));
        Ok(())
    }

    pub(crate) fn call_foreign(&mut self, name: &[u8], args: &[u8]) -> Result<Vec<u8>, Status> {
        let name = String::from_utf8_lossy(name).into_owned();
        if name == "clear_route_cache" {
            let context = self.effective;
            let stream = self.http.get_mut(&context).ok_or(Status::NotFound)?;
            stream.route_cache_cleared += 1;
            return Ok(Vec::new());
        }
        if let Some(function) = self.foreign.get_mut(&name) {
            return function(args);
        }
        envoy_foreign_function(&name, args).ok_or(Status::NotFound)?
    }
}

/// Envoy's own foreign functions that need no proxy state: `compress` and
/// `uncompress` are zlib (checked: the Go SDK's foreign_call_on_tick logs
/// the same bytes in both hosts).
fn envoy_foreign_function(name: &str, args: &[u8]) -> Option<Result<Vec<u8>, Status>> {
    use std::io::Write as _;
    match name {
        "compress" => {
            let mut encoder =
                flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
            let done = encoder.write_all(args).and_then(|()| encoder.finish());
            Some(done.map_err(|_| Status::SerializationFailure))
        }
        "uncompress" => {
            let mut decoder = flate2::write::ZlibDecoder::new(Vec::new());
            let done = decoder.write_all(args).and_then(|()| decoder.finish());
            Some(done.map_err(|_| Status::SerializationFailure))
        }
        _ => None,
    }
}
