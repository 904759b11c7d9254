//! Choosing one destination of a weighted route: at random, or sticky by a
//! hash of something that identifies the client.
//!
//! Weights are normalised as weight / sum (Istio no longer asks for a sum
//! of 100) into cumulative thresholds over one million, and a draw in
//! `0..1_000_000` picks the first threshold above it. A random draw gives
//! the split per request; a hashed draw gives it per client, and the same
//! client always draws the same number, so it stays on one destination
//! while the weights hold. The hash does not depend on the route, so a
//! client in the first 5 % of one canary is in the first 5 % of every
//! canary with the same weights: a consistent experience across services.

use crate::error::{ConfigError, ConfigErrorKind, FieldPath};
use crate::percent::MILLION;
use crate::request::RequestAttributes;
use crate::request_match::{query_param, query_string};
use crate::shared_counter::fnv1a64;
use crate::virtual_service::Stickiness;

/// Cumulative thresholds of a weighted choice.
///
/// # Examples
///
/// ```
/// use meshwasm_core::router::split::Split;
///
/// let split = Split::from_weights(&[3, 1]).unwrap();
/// assert_eq!(split.pick(0), 0);
/// assert_eq!(split.pick(749_999), 0);
/// assert_eq!(split.pick(750_000), 1);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Split {
    thresholds: Vec<u32>,
}

impl Split {
    /// Normalises weights. A single destination takes every request whatever
    /// its weight, as in Istio.
    ///
    /// # Errors
    ///
    /// [`ConfigErrorKind::Invalid`] for a negative weight or weights that sum to 0.
    pub fn from_weights(weights: &[i32]) -> Result<Self, ConfigErrorKind> {
        // Istio refuses a negative weight even on a lone destination.
        if let Some(w) = weights.iter().find(|w| **w < 0) {
            return Err(ConfigErrorKind::Invalid {
                reason: format!("weight {w} is negative"),
            });
        }
        if weights.len() == 1 {
            return Ok(Split {
                thresholds: vec![MILLION],
            });
        }
        let sum: u64 = weights.iter().map(|w| u64::from(w.unsigned_abs())).sum();
        if sum == 0 {
            return Err(ConfigErrorKind::Invalid {
                reason: "the weights of a route's destinations sum to 0; give at least one a positive weight".into(),
            });
        }
        let mut running = 0u64;
        let thresholds = weights
            .iter()
            .map(|w| {
                running += u64::from(w.unsigned_abs());
                // running <= sum, so the quotient is at most one million.
                u32::try_from(running * u64::from(MILLION) / sum).unwrap_or(MILLION)
            })
            .collect();
        Ok(Split { thresholds })
    }

    pub(crate) fn compile_at(path: &FieldPath<'_>, weights: &[i32]) -> Result<Self, ConfigError> {
        Self::from_weights(weights).map_err(|kind| path.error(kind))
    }

    /// The destination for a draw in `0..1_000_000`.
    pub fn pick(&self, draw: u32) -> usize {
        self.thresholds
            .iter()
            .position(|t| draw < *t)
            .unwrap_or(self.thresholds.len().saturating_sub(1))
    }

    /// True when one destination takes every request, so no draw is needed.
    pub fn is_single(&self) -> bool {
        self.thresholds.len() == 1
    }
}

/// What identifies a client for sticky choices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StickyKey {
    /// A request header's value (name lowercase).
    Header(String),
    /// A cookie's value.
    Cookie(String),
    /// The client's IP address, without its port.
    SourceIp,
    /// A query parameter's value.
    QueryParameter(String),
}

impl StickyKey {
    pub(crate) fn compile_at(path: &FieldPath<'_>, s: &Stickiness) -> Result<Self, ConfigError> {
        let mut keys = Vec::new();
        if let Some(h) = &s.http_header_name {
            keys.push(StickyKey::Header(h.to_ascii_lowercase()));
        }
        if let Some(c) = &s.http_cookie {
            keys.push(StickyKey::Cookie(c.name.clone()));
        }
        if s.use_source_ip {
            keys.push(StickyKey::SourceIp);
        }
        if let Some(q) = &s.http_query_parameter_name {
            keys.push(StickyKey::QueryParameter(q.clone()));
        }
        let mut keys = keys.into_iter();
        match (keys.next(), keys.next()) {
            (Some(key), None) => Ok(key),
            (None, _) => Err(path.error(ConfigErrorKind::Missing {
                reason: "set one of httpHeaderName, httpCookie, useSourceIp and httpQueryParameterName",
            })),
            (Some(_), Some(_)) => Err(path.error(ConfigErrorKind::Conflict {
                reason: "set only one of httpHeaderName, httpCookie, useSourceIp and httpQueryParameterName",
            })),
        }
    }

    /// The client's draw in `0..1_000_000`, or `None` when the request does
    /// not carry the key (the choice is then random).
    ///
    /// # Examples
    ///
    /// ```
    /// use meshwasm_core::request::StaticRequest;
    /// use meshwasm_core::router::split::StickyKey;
    ///
    /// let key = StickyKey::Cookie("user".into());
    /// let mut a = StaticRequest::get("/").with_header("cookie", "theme=dark; user=u-17");
    /// let mut b = StaticRequest::get("/x").with_header("cookie", "user=u-17");
    /// assert_eq!(key.draw(&mut a), key.draw(&mut b));
    /// assert_eq!(key.draw(&mut StaticRequest::get("/")), None);
    /// ```
    pub fn draw(&self, req: &mut impl RequestAttributes) -> Option<u32> {
        match self {
            StickyKey::Header(name) => req.header(name).map(|v| bucket(v.as_bytes())),
            StickyKey::Cookie(name) => {
                let cookies = req.header("cookie")?;
                cookie(&cookies, name).map(|v| bucket(v.as_bytes()))
            }
            StickyKey::SourceIp => {
                let address = req.source_address()?;
                Some(bucket(ip_of(&address).as_bytes()))
            }
            StickyKey::QueryParameter(name) => {
                let path = req.header(":path")?;
                query_param(query_string(&path), name).map(|v| bucket(v.as_bytes()))
            }
        }
    }
}

/// A well-mixed position in `0..1_000_000` for a key: FNV-1a, then the
/// SplitMix64 finaliser, so that similar keys (`user-1`, `user-2`) spread.
pub fn bucket(key: &[u8]) -> u32 {
    let mut z = fnv1a64(key);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    u32::try_from(z % u64::from(MILLION)).unwrap_or(0)
}

/// A cookie's value from a `Cookie` header. Several `Cookie` headers read
/// joined with `,`, which a cookie value cannot contain.
pub fn cookie<'c>(header: &'c str, name: &str) -> Option<&'c str> {
    header.split([';', ',']).find_map(|pair| {
        let (n, v) = pair.trim().split_once('=')?;
        (n == name).then_some(v)
    })
}

/// The IP of `ip:port` or `[ipv6]:port`.
fn ip_of(address: &str) -> &str {
    if let Some(rest) = address.strip_prefix('[') {
        return rest.split_once(']').map_or(rest, |(ip, _)| ip);
    }
    match address.rsplit_once(':') {
        // One colon: IPv4 with a port. More: a bare IPv6 address.
        Some((ip, _)) if !ip.contains(':') => ip,
        _ => address,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_lose_their_port() {
        assert_eq!(ip_of("10.1.2.3:4567"), "10.1.2.3");
        assert_eq!(ip_of("[::1]:80"), "::1");
        assert_eq!(ip_of("fe80::1"), "fe80::1");
    }
}
