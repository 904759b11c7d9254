//! Rate-limit descriptors: what Envoy's route `RateLimit` actions make of
//! a request, and which configured descriptor each one draws on.
//!
//! Each `RateLimit` gives at most one descriptor, its actions' entries in
//! order. An action that cannot produce its entry (a missing header
//! without `skipIfAbsent`, a header match that fails) drops the whole
//! descriptor, as in Envoy.

use super::config;
use crate::error::{ConfigError, ConfigErrorKind, FieldPath};
use crate::regex::FullRegex;
use crate::request::RequestAttributes;
use crate::request_match::{path_without_query, query_param, query_string};
use crate::string_match::{Case, StringMatcher};
use std::net::IpAddr;

/// One entry of a descriptor.
pub type Entry = (String, String);

/// The actions of one `RateLimit`, compiled.
#[derive(Debug, Clone)]
pub struct RateLimitActions(Vec<Action>);

#[derive(Debug, Clone)]
enum Action {
    DestinationCluster,
    RequestHeader {
        header: String,
        key: String,
        skip_if_absent: bool,
    },
    QueryParameter {
        name: String,
        key: String,
        skip_if_absent: bool,
    },
    RemoteAddress,
    MaskedRemoteAddress {
        v4: u8,
        v6: u8,
    },
    GenericKey {
        key: String,
        value: String,
    },
    HeaderValueMatch {
        key: String,
        value: String,
        expect_match: bool,
        headers: Vec<HeaderCondition>,
    },
    QueryValueMatch {
        key: String,
        value: String,
        expect_match: bool,
        params: Vec<QueryCondition>,
    },
}

#[derive(Debug, Clone)]
struct HeaderCondition {
    name: String,
    test: ValueTest,
    invert: bool,
    missing_as_empty: bool,
}

#[derive(Debug, Clone)]
struct QueryCondition {
    name: String,
    test: ValueTest,
}

#[derive(Debug, Clone)]
enum ValueTest {
    Present(bool),
    Value(StringMatcher),
}

impl RateLimitActions {
    /// Compiles `rateLimits[i]`.
    ///
    /// # Errors
    ///
    /// An action Envoy refuses or meshwasm does not carry out, by path.
    pub fn compile(
        rate_limit: &config::RateLimit,
        at: &FieldPath<'_>,
    ) -> Result<Self, ConfigError> {
        for (name, set) in [
            ("stage", rate_limit.stage.is_some()),
            ("disableKey", rate_limit.disable_key.is_some()),
            ("limit", rate_limit.limit.is_some()),
            ("hitsAddend", rate_limit.hits_addend.is_some()),
            (
                "applyOnStreamDone",
                rate_limit.apply_on_stream_done.is_some(),
            ),
            ("xRatelimitOption", rate_limit.x_ratelimit_option.is_some()),
        ] {
            if set {
                return Err(at.field(name).error(ConfigErrorKind::Unsupported {
                    reason: "Envoy's local rate limit filter refuses it in its inline rateLimits",
                }));
            }
        }
        let actions_at = at.field("actions");
        if rate_limit.actions.is_empty() {
            return Err(actions_at.error(ConfigErrorKind::Missing {
                reason: "a rate limit needs at least one action",
            }));
        }
        let actions = rate_limit
            .actions
            .iter()
            .enumerate()
            .map(|(i, a)| Action::compile(a, &actions_at.index(i)))
            .collect::<Result<_, _>>()?;
        Ok(RateLimitActions(actions))
    }

    /// The descriptor these actions make of the request, if they make one.
    ///
    /// # Examples
    ///
    /// ```
    /// use meshwasm_core::rate_limit::config::RateLimit;
    /// use meshwasm_core::rate_limit::descriptor::RateLimitActions;
    /// use meshwasm_core::request::StaticRequest;
    /// use meshwasm_core::FieldPath;
    ///
    /// let rl: RateLimit = serde_json::from_str(r#"{"actions": [
    ///     {"request_headers": {"header_name": "x-api-key", "descriptor_key": "key"}},
    ///     {"remoteAddress": {}}]}"#).unwrap();
    /// let actions = RateLimitActions::compile(&rl, &FieldPath::ROOT).unwrap();
    /// let mut req = StaticRequest::get("/").with_header("x-api-key", "k1").with_source("10.1.2.3:5000");
    /// assert_eq!(
    ///     actions.descriptor(&mut req),
    ///     Some(vec![("key".into(), "k1".into()), ("remote_address".into(), "10.1.2.3".into())])
    /// );
    /// assert_eq!(actions.descriptor(&mut StaticRequest::get("/")), None);
    /// ```
    pub fn descriptor(&self, req: &mut impl RequestAttributes) -> Option<Vec<Entry>> {
        let mut entries = Vec::with_capacity(self.0.len());
        for action in &self.0 {
            match action.entry(req) {
                Produced::Entry(entry) => entries.push(entry),
                Produced::Skip => {}
                Produced::Drop => return None,
            }
        }
        (!entries.is_empty()).then_some(entries)
    }

    /// Whether any action reads the client's input (headers, address,
    /// query), so that its values are unbounded.
    pub fn reads_client_input(&self) -> bool {
        self.0.iter().any(|a| {
            matches!(
                a,
                Action::RequestHeader { .. }
                    | Action::QueryParameter { .. }
                    | Action::RemoteAddress
                    | Action::MaskedRemoteAddress { .. }
            )
        })
    }
}

enum Produced {
    Entry(Entry),
    Skip,
    Drop,
}

impl Action {
    fn compile(a: &config::Action, at: &FieldPath<'_>) -> Result<Self, ConfigError> {
        let refused = [
            (
                "sourceCluster",
                a.source_cluster.is_some(),
                "a filter does not know its local cluster; use genericKey with the service's name",
            ),
            (
                "dynamicMetadata",
                a.dynamic_metadata.is_some(),
                "dynamic metadata is not visible to the filter; use requestHeaders",
            ),
            (
                "metadata",
                a.metadata.is_some(),
                "metadata is not visible to the filter; use requestHeaders or genericKey",
            ),
            (
                "extension",
                a.extension.is_some(),
                "descriptor extensions are not available in Wasm",
            ),
        ];
        if let Some((name, _, reason)) = refused.iter().find(|(_, set, _)| *set) {
            return Err(at
                .field(name)
                .error(ConfigErrorKind::Unsupported { reason }));
        }
        let mut found = Vec::new();
        if a.destination_cluster.is_some() {
            found.push(Action::DestinationCluster);
        }
        if let Some(h) = &a.request_headers {
            let field = at.field("requestHeaders");
            found.push(Action::RequestHeader {
                header: required_lower(&field.field("headerName"), &h.header_name)?,
                key: required(&field.field("descriptorKey"), &h.descriptor_key)?,
                skip_if_absent: h.skip_if_absent,
            });
        }
        if let Some(q) = &a.query_parameters {
            let field = at.field("queryParameters");
            found.push(Action::QueryParameter {
                name: required(&field.field("queryParameterName"), &q.query_parameter_name)?,
                key: required(&field.field("descriptorKey"), &q.descriptor_key)?,
                skip_if_absent: q.skip_if_absent,
            });
        }
        if a.remote_address.is_some() {
            found.push(Action::RemoteAddress);
        }
        if let Some(m) = &a.masked_remote_address {
            let field = at.field("maskedRemoteAddress");
            let v4 = mask_len(&field.field("v4PrefixMaskLen"), m.v4_prefix_mask_len, 32)?;
            let v6 = mask_len(&field.field("v6PrefixMaskLen"), m.v6_prefix_mask_len, 128)?;
            found.push(Action::MaskedRemoteAddress { v4, v6 });
        }
        if let Some(g) = &a.generic_key {
            let field = at.field("genericKey");
            refuse_default_value(&field, g.default_value.is_some())?;
            found.push(Action::GenericKey {
                key: g
                    .descriptor_key
                    .clone()
                    .filter(|k| !k.is_empty())
                    .unwrap_or_else(|| "generic_key".into()),
                value: required(&field.field("descriptorValue"), &g.descriptor_value)?,
            });
        }
        if let Some(h) = &a.header_value_match {
            let field = at.field("headerValueMatch");
            refuse_default_value(&field, h.default_value.is_some())?;
            let headers_at = field.field("headers");
            if h.headers.is_empty() {
                return Err(headers_at.error(ConfigErrorKind::Missing {
                    reason: "at least one header matcher",
                }));
            }
            found.push(Action::HeaderValueMatch {
                key: h
                    .descriptor_key
                    .clone()
                    .filter(|k| !k.is_empty())
                    .unwrap_or_else(|| "header_match".into()),
                value: required(&field.field("descriptorValue"), &h.descriptor_value)?,
                expect_match: h.expect_match.unwrap_or(true),
                headers: h
                    .headers
                    .iter()
                    .enumerate()
                    .map(|(i, m)| HeaderCondition::compile(m, &headers_at.index(i)))
                    .collect::<Result<_, _>>()?,
            });
        }
        if let Some(q) = &a.query_parameter_value_match {
            let field = at.field("queryParameterValueMatch");
            refuse_default_value(&field, q.default_value.is_some())?;
            let params_at = field.field("queryParameters");
            if q.query_parameters.is_empty() {
                return Err(params_at.error(ConfigErrorKind::Missing {
                    reason: "at least one query parameter matcher",
                }));
            }
            found.push(Action::QueryValueMatch {
                key: q
                    .descriptor_key
                    .clone()
                    .filter(|k| !k.is_empty())
                    .unwrap_or_else(|| "query_match".into()),
                value: required(&field.field("descriptorValue"), &q.descriptor_value)?,
                expect_match: q.expect_match.unwrap_or(true),
                params: q
                    .query_parameters
                    .iter()
                    .enumerate()
                    .map(|(i, m)| QueryCondition::compile(m, &params_at.index(i)))
                    .collect::<Result<_, _>>()?,
            });
        }
        match found.len() {
            1 => Ok(found.remove(0)),
            0 => Err(at.error(ConfigErrorKind::Missing {
                reason: "one of requestHeaders, queryParameters, remoteAddress, maskedRemoteAddress, genericKey, headerValueMatch, queryParameterValueMatch, destinationCluster",
            })),
            _ => Err(at.error(ConfigErrorKind::Conflict { reason: "an action sets exactly one of its kinds" })),
        }
    }

    fn entry(&self, req: &mut impl RequestAttributes) -> Produced {
        let entry = |k: &str, v: String| Produced::Entry((k.to_owned(), v));
        match self {
            Action::DestinationCluster => match req.route_cluster() {
                Some(c) => entry("destination_cluster", c.into_owned()),
                None => Produced::Drop,
            },
            Action::RequestHeader {
                header,
                key,
                skip_if_absent,
            } => match req.first_header(header) {
                Some(v) => entry(key, v.into_owned()),
                None if *skip_if_absent => Produced::Skip,
                None => Produced::Drop,
            },
            Action::QueryParameter {
                name,
                key,
                skip_if_absent,
            } => match query_value(req, name) {
                Some(v) => entry(key, v),
                None if *skip_if_absent => Produced::Skip,
                None => Produced::Drop,
            },
            Action::RemoteAddress => match client_ip(req) {
                Some(ip) => entry("remote_address", ip.to_string()),
                None => Produced::Drop,
            },
            Action::MaskedRemoteAddress { v4, v6 } => match client_ip(req) {
                Some(ip) => entry("masked_remote_address", masked(ip, *v4, *v6)),
                None => Produced::Drop,
            },
            Action::GenericKey { key, value } => entry(key, value.clone()),
            Action::HeaderValueMatch {
                key,
                value,
                expect_match,
                headers,
            } => {
                let all = headers.iter().all(|h| h.matches(req));
                if all == *expect_match {
                    entry(key, value.clone())
                } else {
                    Produced::Drop
                }
            }
            Action::QueryValueMatch {
                key,
                value,
                expect_match,
                params,
            } => {
                let all = params.iter().all(|p| p.matches(req));
                if all == *expect_match {
                    entry(key, value.clone())
                } else {
                    Produced::Drop
                }
            }
        }
    }
}

impl HeaderCondition {
    fn compile(m: &config::HeaderMatcher, at: &FieldPath<'_>) -> Result<Self, ConfigError> {
        if m.range_match.is_some() {
            return Err(at.field("rangeMatch").error(ConfigErrorKind::Unsupported {
                reason: "integer ranges are not matched; use stringMatch.safeRegex",
            }));
        }
        let name = required_lower(&at.field("name"), &m.name)?;
        let legacy = |s: &Option<String>, make: fn(String) -> StringMatcher| s.clone().map(make);
        let mut tests: Vec<ValueTest> = [
            legacy(&m.exact_match, |v| StringMatcher::Exact(v, Case::Sensitive)),
            legacy(&m.prefix_match, |v| {
                StringMatcher::Prefix(v, Case::Sensitive)
            }),
            legacy(&m.suffix_match, |v| {
                StringMatcher::Suffix(v, Case::Sensitive)
            }),
            legacy(&m.contains_match, |v| {
                StringMatcher::Contains(v, Case::Sensitive)
            }),
        ]
        .into_iter()
        .flatten()
        .map(ValueTest::Value)
        .collect();
        if let Some(r) = &m.safe_regex_match {
            tests.push(ValueTest::Value(regex(r, &at.field("safeRegexMatch"))?));
        }
        if let Some(p) = m.present_match {
            tests.push(ValueTest::Present(p));
        }
        if let Some(s) = &m.string_match {
            tests.push(ValueTest::Value(string_matcher(
                s,
                &at.field("stringMatch"),
            )?));
        }
        let test = match tests.len() {
            // Envoy: a matcher with no condition matches a present header.
            0 => ValueTest::Present(true),
            1 => tests.remove(0),
            _ => {
                return Err(at.error(ConfigErrorKind::Conflict {
                    reason: "a header matcher sets one kind of match",
                }));
            }
        };
        Ok(HeaderCondition {
            name,
            test,
            invert: m.invert_match,
            missing_as_empty: m.treat_missing_header_as_empty,
        })
    }

    fn matches(&self, req: &mut impl RequestAttributes) -> bool {
        let value = req.header(&self.name);
        let result = match (&self.test, value) {
            (ValueTest::Present(want), v) => v.is_some() == *want,
            (ValueTest::Value(m), Some(v)) => m.matches(&v),
            (ValueTest::Value(m), None) if self.missing_as_empty => m.matches(""),
            // An absent header fails a value match, inverted or not.
            (ValueTest::Value(_), None) => return false,
        };
        result != self.invert
    }
}

impl QueryCondition {
    fn compile(m: &config::QueryParameterMatcher, at: &FieldPath<'_>) -> Result<Self, ConfigError> {
        let name = required(&at.field("name"), &m.name)?;
        let test = match (&m.string_match, m.present_match) {
            (Some(s), None) => ValueTest::Value(string_matcher(s, &at.field("stringMatch"))?),
            (None, Some(p)) => ValueTest::Present(p),
            (None, None) => {
                return Err(at.error(ConfigErrorKind::Missing {
                    reason: "stringMatch or presentMatch",
                }));
            }
            (Some(_), Some(_)) => {
                return Err(at.error(ConfigErrorKind::Conflict {
                    reason: "set stringMatch or presentMatch, not both",
                }));
            }
        };
        Ok(QueryCondition { name, test })
    }

    fn matches(&self, req: &mut impl RequestAttributes) -> bool {
        let value = query_value(req, &self.name);
        match (&self.test, value) {
            (ValueTest::Present(want), v) => v.is_some() == *want,
            (ValueTest::Value(m), Some(v)) => m.matches(&v),
            (ValueTest::Value(_), None) => false,
        }
    }
}

fn string_matcher(
    m: &config::EnvoyStringMatcher,
    at: &FieldPath<'_>,
) -> Result<StringMatcher, ConfigError> {
    if m.custom.is_some() {
        return Err(at.field("custom").error(ConfigErrorKind::Unsupported {
            reason: "matcher extensions are not available in Wasm",
        }));
    }
    let case = if m.ignore_case {
        Case::IgnoreAscii
    } else {
        Case::Sensitive
    };
    let mut found = Vec::new();
    if let Some(v) = &m.exact {
        found.push(StringMatcher::Exact(v.clone(), case));
    }
    if let Some(v) = &m.prefix {
        found.push(StringMatcher::Prefix(v.clone(), case));
    }
    if let Some(v) = &m.suffix {
        found.push(StringMatcher::Suffix(v.clone(), case));
    }
    if let Some(v) = &m.contains {
        found.push(StringMatcher::Contains(v.clone(), case));
    }
    if let Some(r) = &m.safe_regex {
        found.push(regex(r, &at.field("safeRegex"))?);
    }
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err(at.error(ConfigErrorKind::Missing {
            reason: "one of exact, prefix, suffix, contains, safeRegex",
        })),
        _ => Err(at.error(ConfigErrorKind::Conflict {
            reason: "set one of exact, prefix, suffix, contains, safeRegex",
        })),
    }
}

fn regex(r: &config::RegexMatcher, at: &FieldPath<'_>) -> Result<StringMatcher, ConfigError> {
    FullRegex::new(&r.regex)
        .map(StringMatcher::Regex)
        .map_err(|kind| at.field("regex").error(kind))
}

fn required(at: &FieldPath<'_>, value: &str) -> Result<String, ConfigError> {
    if value.is_empty() {
        return Err(at.error(ConfigErrorKind::Missing {
            reason: "a non-empty string",
        }));
    }
    Ok(value.to_owned())
}

fn required_lower(at: &FieldPath<'_>, value: &str) -> Result<String, ConfigError> {
    required(at, value).map(|v| v.to_ascii_lowercase())
}

fn refuse_default_value(at: &FieldPath<'_>, set: bool) -> Result<(), ConfigError> {
    if set {
        return Err(at.field("defaultValue").error(ConfigErrorKind::Unsupported {
            reason: "it only applies with Envoy's descriptor formatter, which is off by default and not evaluated here",
        }));
    }
    Ok(())
}

fn mask_len(at: &FieldPath<'_>, value: Option<u32>, max: u32) -> Result<u8, ConfigError> {
    let len = value.unwrap_or(max);
    if len > max {
        return Err(at.error(ConfigErrorKind::Invalid {
            reason: format!("{len} is longer than {max} bits"),
        }));
    }
    Ok(len as u8)
}

/// A query parameter of the request's `:path`, percent-decoded, first occurrence.
fn query_value(req: &mut impl RequestAttributes, name: &str) -> Option<String> {
    let path = req.header(":path")?;
    if path_without_query(&path).len() == path.len() {
        return None;
    }
    query_param(query_string(&path), name).map(percent_decode)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The client's IP from Envoy's `source.address` (`ip:port`, `[v6]:port`).
fn client_ip(req: &mut impl RequestAttributes) -> Option<IpAddr> {
    let address = req.source_address()?;
    if let Ok(socket) = address.parse::<std::net::SocketAddr>() {
        return Some(socket.ip());
    }
    address.parse().ok()
}

/// `ip/len` of the network the address is in, as Envoy writes it.
fn masked(ip: IpAddr, v4: u8, v6: u8) -> String {
    match ip {
        IpAddr::V4(a) => {
            let bits = u32::from(a) & u32::MAX.checked_shl(32 - u32::from(v4)).unwrap_or(0);
            format!("{}/{v4}", std::net::Ipv4Addr::from(bits))
        }
        IpAddr::V6(a) => {
            let bits = u128::from(a) & u128::MAX.checked_shl(128 - u32::from(v6)).unwrap_or(0);
            format!("{}/{v6}", std::net::Ipv6Addr::from(bits))
        }
    }
}

/// A configured descriptor: its entries, an empty value matching any value.
#[derive(Debug, Clone)]
pub struct DescriptorPattern {
    entries: Vec<(String, Option<String>)>,
}

impl DescriptorPattern {
    /// From the configured entries.
    pub fn new(entries: &[config::DescriptorEntry]) -> Self {
        DescriptorPattern {
            entries: entries
                .iter()
                .map(|e| {
                    (
                        e.key.clone(),
                        (!e.value.is_empty()).then(|| e.value.clone()),
                    )
                })
                .collect(),
        }
    }

    /// Whether some value is left open, so that each value gets a bucket.
    pub fn is_dynamic(&self) -> bool {
        self.entries.iter().any(|(_, v)| v.is_none())
    }

    /// Whether a request's descriptor has these entries, in order.
    pub fn matches(&self, descriptor: &[Entry]) -> bool {
        self.entries.len() == descriptor.len()
            && self
                .entries
                .iter()
                .zip(descriptor)
                .all(|((k, v), (dk, dv))| k == dk && v.as_ref().is_none_or(|v| v == dv))
    }

    /// Whether every value is given and equal to the descriptor's.
    pub fn matches_exactly(&self, descriptor: &[Entry]) -> bool {
        !self.is_dynamic() && self.matches(descriptor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::StaticRequest;

    fn actions(json: &str) -> RateLimitActions {
        let rl: config::RateLimit = serde_json::from_str(json).unwrap();
        RateLimitActions::compile(&rl, &FieldPath::ROOT).unwrap()
    }

    #[test]
    fn masked_addresses_are_networks() {
        let a = actions(
            r#"{"actions": [{"masked_remote_address": {"v4_prefix_mask_len": 24, "v6_prefix_mask_len": 64}}]}"#,
        );
        let mut v4 = StaticRequest::get("/").with_source("10.1.2.3:4000");
        assert_eq!(a.descriptor(&mut v4).unwrap()[0].1, "10.1.2.0/24");
        let mut v6 = StaticRequest::get("/").with_source("[2001:db8:1:2:3::4]:4000");
        assert_eq!(a.descriptor(&mut v6).unwrap()[0].1, "2001:db8:1:2::/64");
    }

    #[test]
    fn skip_if_absent_omits_the_entry_and_otherwise_the_descriptor() {
        let a = actions(
            r#"{"actions": [{"genericKey": {"descriptorValue": "api"}},
            {"requestHeaders": {"headerName": "x-user", "descriptorKey": "user", "skipIfAbsent": true}}]}"#,
        );
        assert_eq!(
            a.descriptor(&mut StaticRequest::get("/")),
            Some(vec![("generic_key".into(), "api".into())])
        );
    }

    #[test]
    fn header_value_match_honours_expect_match_and_invert() {
        let a = actions(
            r#"{"actions": [{"header_value_match": {"descriptor_value": "bot", "expect_match": false,
            "headers": [{"name": "user-agent", "string_match": {"contains": "Mozilla"}}]}}]}"#,
        );
        let mut browser = StaticRequest::get("/").with_header("user-agent", "Mozilla/5.0");
        let mut crawler = StaticRequest::get("/").with_header("user-agent", "curl/8");
        assert_eq!(a.descriptor(&mut browser), None);
        assert_eq!(
            a.descriptor(&mut crawler),
            Some(vec![("header_match".into(), "bot".into())])
        );
    }

    #[test]
    fn query_parameters_are_decoded() {
        let a = actions(
            r#"{"actions": [{"query_parameters": {"query_parameter_name": "key", "descriptor_key": "k"}}]}"#,
        );
        let mut req = StaticRequest::get("/search?key=a%20b&key=c");
        assert_eq!(a.descriptor(&mut req).unwrap()[0].1, "a b");
    }

    #[test]
    fn patterns_match_entries_in_order_with_wildcards() {
        let p = DescriptorPattern::new(&[
            config::DescriptorEntry {
                key: "a".into(),
                value: "1".into(),
            },
            config::DescriptorEntry {
                key: "b".into(),
                value: String::new(),
            },
        ]);
        let d = |a: &str, b: &str| {
            vec![
                ("a".to_owned(), a.to_owned()),
                ("b".to_owned(), b.to_owned()),
            ]
        };
        assert!(p.matches(&d("1", "anything")));
        assert!(!p.matches(&d("2", "x")));
        assert!(!p.matches(&d("1", "x")[..1]));
        assert!(p.is_dynamic());
    }
}
