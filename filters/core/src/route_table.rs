//! A VirtualService's `hosts` and `http` routes, compiled once; the first
//! route that matches a request is selected, as Istio does.
//!
//! The table is generic over what each filter keeps per route: the fault
//! filter keeps a fault policy, the router a destination choice.

use crate::error::{ConfigError, ConfigErrorKind, ConfigNote, FieldPath};
use crate::hosts::HostMatcher;
use crate::request::RequestAttributes;
use crate::request_match::RequestMatcher;
use crate::virtual_service::{HttpRoute, VirtualService};

/// One compiled route.
#[derive(Debug, Clone)]
pub struct Route<T> {
    /// Position in `http`.
    pub index: usize,
    /// The route's `name`, if it has one.
    pub name: Option<String>,
    /// ORed match blocks; empty matches every request.
    matches: Vec<RequestMatcher>,
    /// What the filter keeps for this route.
    pub value: T,
}

impl<T> Route<T> {
    /// `Some(None)` when the route has no match blocks, `Some(Some(block))`
    /// for the first block that holds, `None` when none does.
    fn first_match(&self, req: &mut impl RequestAttributes) -> Option<Option<&RequestMatcher>> {
        if self.matches.is_empty() {
            return Some(None);
        }
        self.matches.iter().find(|m| m.matches(req)).map(Some)
    }
}

/// Compiled hosts and routes.
///
/// # Examples
///
/// ```
/// use meshwasm_core::request::StaticRequest;
/// use meshwasm_core::route_table::RouteTable;
/// use meshwasm_core::virtual_service::VirtualService;
///
/// let vs = VirtualService::from_json(br#"{"hosts": ["reviews"], "http": [
///     {"name": "jason", "match": [{"headers": {"end-user": {"exact": "jason"}}}]},
///     {"name": "default"}]}"#).unwrap();
/// let table = RouteTable::compile(&vs, &mut Vec::new(), |_, _, _| Ok(())).unwrap();
/// let mut req = StaticRequest::get("/").set_header(":authority", "reviews");
/// assert_eq!(table.select(&mut req).unwrap().name.as_deref(), Some("default"));
/// ```
#[derive(Debug, Clone)]
pub struct RouteTable<T> {
    hosts: HostMatcher,
    routes: Vec<Route<T>>,
}

impl<T> RouteTable<T> {
    /// Compiles `hosts` and every route's `match`; `per_route` builds the
    /// filter's own value for each route, given the route's path (`http[i]`).
    ///
    /// # Errors
    ///
    /// The first [`ConfigError`] found, with its path.
    pub fn compile(
        vs: &VirtualService,
        notes: &mut Vec<ConfigNote>,
        per_route: impl FnMut(
            &FieldPath<'_>,
            &HttpRoute,
            &mut Vec<ConfigNote>,
        ) -> Result<T, ConfigError>,
    ) -> Result<Self, ConfigError> {
        Self::compile_at(&FieldPath::ROOT, vs, notes, per_route)
    }

    /// As [`compile`](Self::compile), for a spec found at `root` (`[1]` in a
    /// list of VirtualServices), so errors and notes name it.
    ///
    /// # Errors
    ///
    /// The first [`ConfigError`] found, with its path.
    pub fn compile_at(
        root: &FieldPath<'_>,
        vs: &VirtualService,
        notes: &mut Vec<ConfigNote>,
        mut per_route: impl FnMut(
            &FieldPath<'_>,
            &HttpRoute,
            &mut Vec<ConfigNote>,
        ) -> Result<T, ConfigError>,
    ) -> Result<Self, ConfigError> {
        let hosts = HostMatcher::compile_at(&root.field("hosts"), &vs.hosts)?;
        if !vs.gateways.is_empty() {
            notes.push(
                root.field("gateways")
                    .note("not evaluated: the filter applies where it is deployed"),
            );
        }
        if !vs.tcp.is_empty() || !vs.tls.is_empty() {
            notes.push(root.note("tcp and tls routes are not seen by HTTP filters; ignored"));
        }
        let http = root.field("http");
        let mut routes = Vec::with_capacity(vs.http.len());
        for (index, route) in vs.http.iter().enumerate() {
            let at = http.index(index);
            let match_path = at.field("match");
            let matches = route
                .matches
                .iter()
                .enumerate()
                .map(|(j, m)| RequestMatcher::compile_at(&match_path.index(j), m, notes))
                .collect::<Result<Vec<_>, _>>()?;
            let value = per_route(&at, route, notes)?;
            routes.push(Route {
                index,
                name: route.name.clone(),
                matches,
                value,
            });
        }
        Ok(RouteTable { hosts, routes })
    }

    /// The first route matching the request, or `None` when the authority is
    /// not among `hosts` or no route matches.
    pub fn select(&self, req: &mut impl RequestAttributes) -> Option<&Route<T>> {
        self.select_with_match(req).map(|(route, _)| route)
    }

    /// As [`select`](Self::select), also giving the match block that held
    /// (`None` for a route without `match`); Istio turns each block into
    /// its own Envoy route, so a prefix rewrite replaces that block's prefix.
    pub fn select_with_match(
        &self,
        req: &mut impl RequestAttributes,
    ) -> Option<(&Route<T>, Option<&RequestMatcher>)> {
        if !self.hosts_match(req) {
            return None;
        }
        self.routes
            .iter()
            .find_map(|r| r.first_match(req).map(|block| (r, block)))
    }

    /// True when the request's authority is among `hosts`.
    pub fn hosts_match(&self, req: &mut impl RequestAttributes) -> bool {
        self.hosts.matches_everything()
            || req
                .header(":authority")
                .is_some_and(|authority| self.hosts.matches(&authority))
    }

    /// How specifically `hosts` match the request's authority; see
    /// [`HostMatcher::rank`].
    pub fn host_rank(&self, req: &mut impl RequestAttributes) -> Option<usize> {
        match req.header(":authority") {
            Some(authority) => self.hosts.rank(&authority),
            None => self.hosts.matches_everything().then_some(0),
        }
    }

    /// The compiled routes in order.
    pub fn routes(&self) -> &[Route<T>] {
        &self.routes
    }
}

/// The position of the table whose `hosts` match the request most
/// specifically (the first on a tie), as Envoy picks a virtual host; `None`
/// when no table's hosts match. A lone table (the common case) is returned
/// without ranking: its own lookup checks the hosts, and the request pays
/// for no second authority read.
pub fn most_specific<'t, T: 't>(
    tables: impl IntoIterator<Item = &'t RouteTable<T>, IntoIter: ExactSizeIterator>,
    req: &mut impl RequestAttributes,
) -> Option<usize> {
    let tables = tables.into_iter();
    if tables.len() == 1 {
        return Some(0);
    }
    let mut best: Option<(usize, usize)> = None;
    for (i, table) in tables.enumerate() {
        if let Some(rank) = table.host_rank(req)
            && best.is_none_or(|(_, r)| rank > r)
        {
            best = Some((i, rank));
        }
    }
    best.map(|(i, _)| i)
}

/// Compiles each spec of a plugin configuration with `compile`, given the
/// path its errors and notes start from: the root for a lone spec,
/// `virtualServices[i]` in a list.
///
/// # Errors
///
/// The first error `compile` returns; [`ConfigErrorKind::Empty`] for no specs.
pub(crate) fn compile_each<T>(
    specs: &[VirtualService],
    mut compile: impl FnMut(&FieldPath<'_>, &VirtualService) -> Result<T, ConfigError>,
) -> Result<Vec<T>, ConfigError> {
    if specs.is_empty() {
        return Err(FieldPath::ROOT.error(ConfigErrorKind::empty(crate::virtual_service::DOCUMENT)));
    }
    let list = FieldPath::ROOT.field(crate::virtual_service::LIST_KEY);
    specs
        .iter()
        .enumerate()
        .map(|(i, vs)| {
            let indexed = list.index(i);
            let root = if specs.len() == 1 {
                &FieldPath::ROOT
            } else {
                &indexed
            };
            compile(root, vs)
        })
        .collect()
}
