//! Istio's HTTP peer metadata exchange: each side sends its workload in
//! `x-envoy-peer-metadata` (base64 of a `google.protobuf.Struct`) and its
//! node id in `x-envoy-peer-metadata-id`; the receiver reads the peer's,
//! removes both before the application sees them, and the server answers
//! with its own only to a client that sent one.

use crate::telemetry::proto::{decode_struct, encode_struct};
use crate::telemetry::workload::Workload;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

/// The header carrying the peer's workload.
pub const METADATA_HEADER: &str = "x-envoy-peer-metadata";
/// The header carrying the peer's node id.
pub const ID_HEADER: &str = "x-envoy-peer-metadata-id";

/// The headers a workload sends, encoded once.
///
/// # Examples
///
/// ```
/// use meshwasm_core::telemetry::peer::{decode, Exchange};
/// use meshwasm_core::telemetry::workload::Workload;
///
/// let me = Workload::from_fields([("WORKLOAD_NAME", "productpage-v1")], [("app", "productpage")]);
/// let exchange = Exchange::new(&me, "sidecar~10.0.0.1~productpage-v1-abc.shop~shop.svc.cluster.local");
/// let peer = decode(exchange.metadata()).unwrap();
/// assert_eq!(peer.workload, "productpage-v1");
/// assert_eq!(peer.app(), Some("productpage"));
/// ```
#[derive(Debug, Clone)]
pub struct Exchange {
    metadata: String,
    id: String,
}

impl Exchange {
    /// The headers of `workload`, whose node id is `id`.
    pub fn new(workload: &Workload, id: &str) -> Exchange {
        Exchange {
            metadata: STANDARD.encode(encode_struct(&workload.to_struct())),
            id: id.to_owned(),
        }
    }

    /// The value of [`METADATA_HEADER`].
    pub fn metadata(&self) -> &str {
        &self.metadata
    }

    /// The value of [`ID_HEADER`].
    pub fn id(&self) -> &str {
        &self.id
    }
}

/// A peer's workload from its [`METADATA_HEADER`] value; `None` when it is
/// not base64 of a `Struct`.
pub fn decode(header: &str) -> Option<Workload> {
    let bytes = STANDARD
        .decode(header.trim())
        .or_else(|_| {
            base64::engine::general_purpose::STANDARD_NO_PAD.decode(header.trim_end_matches('='))
        })
        .ok()?;
    let fields = decode_struct(&bytes).ok()?;
    Some(Workload::from_struct(&fields))
}

/// Peers already decoded, by node id: most requests come from a peer seen
/// before, so the header is decoded once per peer. Bounded: past
/// `capacity`, the peer seen first is forgotten.
///
/// # Examples
///
/// ```
/// use meshwasm_core::telemetry::peer::{Exchange, PeerCache};
/// use meshwasm_core::telemetry::workload::Workload;
///
/// let mut cache = PeerCache::new(1);
/// let a = Exchange::new(&Workload::from_fields([("WORKLOAD_NAME", "a")], []), "id-a");
/// let b = Exchange::new(&Workload::from_fields([("WORKLOAD_NAME", "b")], []), "id-b");
/// assert_eq!(cache.peer(Some(a.id()), a.metadata()).unwrap().workload, "a");
/// assert_eq!(cache.peer(Some(b.id()), b.metadata()).unwrap().workload, "b");
/// assert_eq!(cache.len(), 1);
/// ```
#[derive(Debug)]
pub struct PeerCache {
    capacity: usize,
    peers: HashMap<String, Rc<Workload>>,
    /// Ids in the order first seen, the oldest first.
    order: VecDeque<String>,
}

impl PeerCache {
    /// A cache of at most `capacity` peers (0 caches nothing).
    pub fn new(capacity: usize) -> PeerCache {
        PeerCache {
            capacity,
            peers: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// The peer that sent `metadata` with node id `id`: from the cache when
    /// known, else decoded (and remembered when it has an id).
    pub fn peer(&mut self, id: Option<&str>, metadata: &str) -> Option<Rc<Workload>> {
        if let Some(id) = id.filter(|id| !id.is_empty()) {
            if let Some(peer) = self.peers.get(id) {
                return Some(Rc::clone(peer));
            }
            let peer = Rc::new(decode(metadata)?);
            if self.capacity > 0 {
                if self.order.len() >= self.capacity
                    && let Some(oldest) = self.order.pop_front()
                {
                    self.peers.remove(&oldest);
                }
                self.order.push_back(id.to_owned());
                self.peers.insert(id.to_owned(), Rc::clone(&peer));
            }
            return Some(peer);
        }
        decode(metadata).map(Rc::new)
    }

    /// Peers held.
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    /// True when no peer is held.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_no_peer() {
        let mut cache = PeerCache::new(4);
        assert!(cache.peer(Some("x"), "%%%").is_none());
        assert!(
            cache
                .peer(Some("x"), "")
                .is_some_and(|p| p.workload.is_empty())
        );
        assert!(
            decode("CgUKA2FiYw").is_some(),
            "unpadded base64 is read too"
        );
    }
}
