//! The path an access rule is checked against: what a backend would serve.
//!
//! Authorization bypasses through paths come from the checker and the
//! backend reading one request target two ways (Envoy CVE-2019-9901 and
//! CVE-2021-29492, Istio CVE-2021-31920, CVE-2021-39156, CVE-2020-8595).
//! So the filter normalizes on its own, whatever Envoy's connection manager
//! is configured to do, and checks the result. The request forwarded
//! upstream is not rewritten.

/// How much of the path is normalized before matching, as Istio names
/// Envoy's settings; the strictest is the default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Normalization {
    /// The path as sent, up to its query or fragment.
    None,
    /// Dot segments removed, `\` read as `/`, unreserved characters decoded.
    Base,
    /// `Base`, and repeated slashes merged.
    MergeSlashes,
    /// Every percent-encoding decoded once (`%2F` and `%5C` included),
    /// `;params` cut from every segment, then `MergeSlashes`.
    #[default]
    DecodeAndMergeSlashes,
}

/// Why a path is refused outright (400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BadPath {
    /// A control byte, raw or percent-encoded (`%00`).
    #[error("control byte in the path")]
    ControlByte,
    /// `..` above the root, which backends resolve differently.
    #[error("the path climbs above the root")]
    AboveRoot,
    /// Not origin-form (`/...`) nor absolute-form (`http://host/...`).
    #[error("the request target is not a path")]
    NotAPath,
}

/// The normalized path of a request target (`:path`): query and fragment
/// left out, case kept.
///
/// # Errors
///
/// A [`BadPath`] for a target no backend reads one way only.
///
/// # Examples
///
/// ```
/// use meshwasm_core::authz::path::{normalize, BadPath, Normalization::*};
///
/// assert_eq!(normalize("/public/..%2Fadmin", DecodeAndMergeSlashes).unwrap(), "/admin");
/// assert_eq!(normalize("/admin;jsessionid=1/x?q#f", DecodeAndMergeSlashes).unwrap(), "/admin/x");
/// assert_eq!(normalize("//admin\\x", MergeSlashes).unwrap(), "/admin/x");
/// assert_eq!(normalize("/a/../../etc", DecodeAndMergeSlashes), Err(BadPath::AboveRoot));
/// assert_eq!(normalize("/admin%00.png", DecodeAndMergeSlashes), Err(BadPath::ControlByte));
/// assert_eq!(normalize("/A%2fB", None).unwrap(), "/A%2fB");
/// ```
pub fn normalize(target: &str, mode: Normalization) -> Result<String, BadPath> {
    let raw = target.split(['?', '#']).next().unwrap_or("");
    if raw.bytes().any(is_control) {
        return Err(BadPath::ControlByte);
    }
    if !raw.starts_with('/') {
        return Err(BadPath::NotAPath);
    }
    if mode == Normalization::None {
        return Ok(raw.to_owned());
    }
    let decoded = decode(raw, mode == Normalization::DecodeAndMergeSlashes);
    if decoded.iter().copied().any(is_control) {
        return Err(BadPath::ControlByte);
    }
    let text = String::from_utf8_lossy(&decoded).replace('\\', "/");
    let merge = mode != Normalization::Base;
    let cut_params = mode == Normalization::DecodeAndMergeSlashes;
    let mut segments: Vec<&str> = Vec::new();
    let parts: Vec<&str> = text.split('/').skip(1).collect();
    let last = parts.len().saturating_sub(1);
    for (i, part) in parts.iter().enumerate() {
        let segment = if cut_params {
            part.split(';').next().unwrap_or("")
        } else {
            part
        };
        match segment {
            "." => {
                // `/a/.` is `/a/`: the directory stays a directory.
                if i == last {
                    segments.push("");
                }
            }
            ".." => {
                if segments.pop().is_none() {
                    return Err(BadPath::AboveRoot);
                }
                if i == last {
                    segments.push("");
                }
            }
            // An empty segment is a repeated slash, except the trailing one.
            "" if merge && i != last => {}
            s => segments.push(s),
        }
    }
    let mut out = String::with_capacity(text.len());
    for s in &segments {
        out.push('/');
        if mode == Normalization::DecodeAndMergeSlashes {
            // Decoded once, a `%`, `?` or `#` is part of the name: escaped
            // again, so that reading the result again gives the same path.
            for c in s.chars() {
                match c {
                    '%' => out.push_str("%25"),
                    '?' => out.push_str("%3F"),
                    '#' => out.push_str("%23"),
                    c => out.push(c),
                }
            }
        } else {
            out.push_str(s);
        }
    }
    if out.is_empty() {
        out.push('/');
    }
    Ok(out)
}

fn is_control(b: u8) -> bool {
    b < 0x20 || b == 0x7f
}

/// Percent-decodes once: everything when `all`, else the unreserved
/// characters only (RFC 3986 §2.3), as Envoy's `normalize_path` does.
fn decode(raw: &str, all: bool) -> Vec<u8> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let (Some(h), Some(l)) = (hex(bytes.get(i + 1)), hex(bytes.get(i + 2)))
        {
            let b = h * 16 + l;
            if all || b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                out.push(b);
                i += 3;
                continue;
            }
        } else if bytes[i] == b'%' && !all {
            // A `%` that starts no escape reads as one, so that a decoded
            // character after it cannot make one (`%6%61` is not `%6a`).
            out.extend_from_slice(b"%25");
            i += 1;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

fn hex(b: Option<&u8>) -> Option<u8> {
    (*b? as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::Normalization::*;
    use super::*;

    #[test]
    fn encoded_dot_segments_and_slashes_are_resolved() {
        for (raw, want) in [
            ("/public/%2e%2e/admin", "/admin"),
            ("/public/%2E%2E%2Fadmin", "/admin"),
            ("/public/..%5Cadmin", "/admin"),
            ("/public/.;x=1/admin", "/public/admin"),
            ("/admin/", "/admin/"),
            ("/admin/.", "/admin/"),
            ("/a/b/..", "/a/"),
            ("/%70ublic", "/public"),
            ("/", "/"),
            ("///", "/"),
        ] {
            assert_eq!(
                normalize(raw, DecodeAndMergeSlashes).as_deref(),
                Ok(want),
                "{raw}"
            );
        }
    }

    #[test]
    fn weaker_modes_do_only_what_they_say() {
        assert_eq!(normalize("/a%2Fb//c", Base).as_deref(), Ok("/a%2Fb//c"));
        assert_eq!(
            normalize("/a%2Fb//c", MergeSlashes).as_deref(),
            Ok("/a%2Fb/c")
        );
        assert_eq!(normalize("/a;b/../c", MergeSlashes).as_deref(), Ok("/c"));
        assert_eq!(
            normalize("/a;b/../c", DecodeAndMergeSlashes).as_deref(),
            Ok("/c")
        );
    }

    #[test]
    fn normalizing_twice_changes_nothing() {
        // The fuzzer's first find: `%2561` decoded once is `%61`, which a
        // second reading would decode to `a`.
        assert_eq!(
            normalize("/%2561dmin", DecodeAndMergeSlashes).as_deref(),
            Ok("/%2561dmin")
        );
        // Its second: in BASE, `%6%61` decoded to `%6a`, which is `j`.
        assert_eq!(normalize("/%6%61", Base).as_deref(), Ok("/%256a"));
        for raw in [
            "/a/./b/../c//d;e",
            "/x/%41",
            "/a\\b",
            "/%2561",
            "/a%3Fb",
            "/100%",
            "/a%23",
            "/%6%61",
            "/%2%2F",
        ] {
            for mode in [Base, MergeSlashes, DecodeAndMergeSlashes] {
                let once = normalize(raw, mode).unwrap();
                assert_eq!(normalize(&once, mode).unwrap(), once, "{mode:?} {raw}");
            }
        }
    }
}
