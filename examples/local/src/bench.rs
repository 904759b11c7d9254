//! Cost measurements of Envoy configurations, each reported against the
//! first one (the baseline) measured in the same run.
//!
//! - Instructions per request under `valgrind --tool=callgrind`:
//!   deterministic, so small differences are real.
//! - CPU time per request (utime + stime from /proc), with Envoy pinned to
//!   one core: closer to production, but varies by about 10 % on shared cores.

use crate::envoy::{self, Bootstrap, Envoy};
use crate::traffic::send_many;
use anyhow::{Context, Result};
use std::path::Path;
use std::sync::Arc;

/// One configuration to measure.
pub struct Case {
    /// Row label.
    pub name: String,
    /// The Envoy to start.
    pub bootstrap: Bootstrap,
}

impl Case {
    /// A labelled bootstrap.
    pub fn new(name: &str, bootstrap: Bootstrap) -> Self {
        Case {
            name: name.to_owned(),
            bootstrap,
        }
    }
}

/// The requests a benchmark sends: keep-alive GETs of one path, each
/// shaped by `build(request, i)`; every answer must be 200.
#[derive(Clone)]
pub struct Traffic {
    path: &'static str,
    build: Arc<dyn Fn(reqwest::RequestBuilder, usize) -> reqwest::RequestBuilder + Send + Sync>,
}

impl Traffic {
    /// GETs of `path`, shaped by `build`.
    pub fn new(
        path: &'static str,
        build: impl Fn(reqwest::RequestBuilder, usize) -> reqwest::RequestBuilder
        + Send
        + Sync
        + 'static,
    ) -> Self {
        Traffic {
            path,
            build: Arc::new(build),
        }
    }

    /// Sends `count` requests through `envoy`, `concurrency` at a time.
    ///
    /// # Errors
    ///
    /// Connection errors, or an answer other than 200.
    pub async fn send(&self, envoy: &Envoy, count: usize, concurrency: usize) -> Result<()> {
        let (http, url, build) = (
            envoy::client()?,
            envoy.url(self.path),
            Arc::clone(&self.build),
        );
        let out = send_many(count, concurrency, move |i| build(http.get(&url), i)).await?;
        anyhow::ensure!(out.iter().all(|o| o.status == 200), "a request failed");
        Ok(())
    }
}

/// Which parts of a benchmark to run: `cargo bench ... -- delay cpu` names
/// them; no names runs them all.
pub fn wanted_parts() -> impl Fn(&str) -> bool {
    let parts: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    move |part| parts.is_empty() || parts.iter().any(|p| p == part)
}

/// True when valgrind can be run; otherwise says so.
pub fn have_valgrind() -> bool {
    let found = std::process::Command::new("valgrind")
        .arg("--version")
        .output()
        .is_ok();
    if !found {
        println!("instructions per request: skipped (valgrind is not installed)");
    }
    found
}

/// Prints instructions per request for each case: `n` requests, one at a
/// time, after 200 to warm up.
///
/// # Errors
///
/// Fails if Envoy does not start or traffic fails.
pub async fn instructions_per_request(cases: Vec<Case>, n: usize, traffic: &Traffic) -> Result<()> {
    println!(
        "Envoy instructions per request (callgrind, {n} keep-alive requests after 200 to warm up)"
    );
    let mut baseline = None;
    for case in cases {
        let per_request = counted_instructions(case.bootstrap, traffic, 200, n).await?;
        let base = *baseline.get_or_insert(per_request);
        println!(
            "  {:<52} {:>7.1}k   {:>5.2}x baseline   {:>+6.1}k",
            case.name,
            per_request / 1e3,
            per_request / base,
            (per_request - base) / 1e3
        );
    }
    Ok(())
}

/// Instructions per request of one Envoy configuration under callgrind:
/// `n` requests counted one at a time after `warm_up` uncounted ones.
///
/// # Errors
///
/// Fails if Envoy does not start or traffic fails.
pub async fn counted_instructions(
    bootstrap: Bootstrap,
    traffic: &Traffic,
    warm_up: usize,
    n: usize,
) -> Result<f64> {
    let envoy = Envoy::start(bootstrap.under_callgrind()).await?;
    traffic.send(&envoy, warm_up, 1).await?;
    let total = envoy.count_instructions(traffic.send(&envoy, n, 1)).await?;
    Ok(total as f64 / n as f64)
}

/// Envoy's CPU time per request, in µs, over `n` requests sent
/// `concurrency` at a time.
///
/// # Errors
///
/// Fails if traffic fails or `/proc` cannot be read.
pub async fn cpu_us_per_request(
    envoy: &Envoy,
    traffic: &Traffic,
    n: usize,
    concurrency: usize,
) -> Result<f64> {
    let before = envoy.cpu_time()?;
    traffic.send(envoy, n, concurrency).await?;
    let used = envoy.cpu_time()? - before;
    Ok(used.as_secs_f64() * 1e6 / n as f64)
}

/// Prints Envoy CPU time per request for each case, Envoy pinned to CPU 1,
/// 4 requests at a time; 10 % of `n` requests first let V8 tier up hot code.
///
/// # Errors
///
/// Fails if Envoy does not start or traffic fails.
pub async fn cpu_per_request(cases: Vec<Case>, n: usize, traffic: &Traffic) -> Result<()> {
    println!("Envoy CPU time per request ({n} requests, keep-alive, Envoy pinned to CPU 1)");
    let mut baseline = None;
    for case in cases {
        let envoy = Envoy::start(case.bootstrap.pin_to_cpu(1)).await?;
        traffic.send(&envoy, n / 10, 4).await?;
        let per_request = cpu_us_per_request(&envoy, traffic, n, 4).await?;
        let base = *baseline.get_or_insert(per_request);
        println!(
            "  {:<44} {per_request:>6.1} us   {:>5.2}x baseline   {:>+6.1} us",
            case.name,
            per_request / base,
            per_request - base
        );
    }
    Ok(())
}

/// Pins this process, and every thread it starts from now on, to `cpu`:
/// the load generator stays off the core Envoy is pinned to. Call it
/// before building the async runtime, whose threads then inherit it.
///
/// # Errors
///
/// Fails if the kernel refuses (a CPU the process may not use).
pub fn pin_this_process_to_cpu(cpu: usize) -> Result<()> {
    // SAFETY: `set` is a plain bit set on the stack, fully initialised by
    // CPU_ZERO before use; pid 0 is the calling thread.
    let refused = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_ZERO(&mut set);
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0
    };
    anyhow::ensure!(
        !refused,
        "pinning to CPU {cpu}: {}",
        std::io::Error::last_os_error()
    );
    Ok(())
}

/// A module's size as shipped: raw, after `wasm-opt -Oz`, and gzipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModuleSize {
    /// Bytes of the built `.wasm`.
    pub raw: usize,
    /// After `wasm-opt -Oz`, when binaryen is installed.
    pub optimized: Option<usize>,
    /// `gzip -9` of the smallest of those, as a registry serves it.
    pub gzipped: usize,
}

impl ModuleSize {
    /// Measures the module at `wasm`.
    ///
    /// # Errors
    ///
    /// Fails if the module cannot be read.
    pub fn of(wasm: &Path) -> Result<ModuleSize> {
        use std::io::Write;
        let raw = std::fs::read(wasm).with_context(|| format!("reading {}", wasm.display()))?;
        let optimized_path =
            std::env::temp_dir().join(format!("meshwasm-size-{}.wasm", std::process::id()));
        let ran = std::process::Command::new("wasm-opt")
            .args([
                "-Oz",
                "--enable-bulk-memory",
                "--enable-sign-ext",
                "--enable-nontrapping-float-to-int",
            ])
            .arg(wasm)
            .arg("-o")
            .arg(&optimized_path)
            .stderr(std::process::Stdio::null())
            .status();
        let optimized = match ran {
            Ok(status) if status.success() => {
                let bytes = std::fs::read(&optimized_path).ok();
                let _ = std::fs::remove_file(&optimized_path);
                bytes
            }
            _ => None,
        };
        let shipped = optimized.as_deref().unwrap_or(&raw);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(shipped)?;
        Ok(ModuleSize {
            raw: raw.len(),
            optimized: optimized.as_ref().map(Vec::len),
            gzipped: gz.finish()?.len(),
        })
    }
}

/// Prints a module's size raw, after `wasm-opt -Oz` (when binaryen is
/// installed) and gzipped, as a registry serves it.
///
/// # Panics
///
/// If the module cannot be read: a benchmark of a module that was not built.
#[allow(clippy::expect_used)]
pub fn module_size(wasm: &str) {
    let size = ModuleSize::of(Path::new(wasm)).expect("the module is built");
    println!("module size ({wasm})");
    println!("  raw              {:>9} bytes", size.raw);
    match size.optimized {
        Some(bytes) => println!("  wasm-opt -Oz     {bytes:>9} bytes"),
        None => println!("  wasm-opt -Oz     skipped (install binaryen)"),
    }
    println!("  gzip -9 of that  {:>9} bytes", size.gzipped);
}

/// Where a module's bytes go: code by the crate or kind its functions
/// come from, and the data segments. The module must keep its `name`
/// section (built with `CARGO_PROFILE_WASM_STRIP=false`).
#[derive(Debug, Default)]
pub struct SizeBreakdown {
    /// (group, bytes, functions), largest first.
    pub groups: Vec<(&'static str, usize, usize)>,
    /// The largest functions, (name, bytes).
    pub largest: Vec<(String, usize)>,
    /// Code and data bytes together (custom sections left out).
    pub total: usize,
}

impl SizeBreakdown {
    /// Reads the module at `wasm`.
    ///
    /// # Errors
    ///
    /// Fails if the file cannot be read or is not a module.
    pub fn of(wasm: &Path) -> Result<SizeBreakdown> {
        use wasmparser::{BinaryReader, Name, NameSectionReader, Parser, Payload, TypeRef};
        let bytes = std::fs::read(wasm).with_context(|| format!("reading {}", wasm.display()))?;
        let (mut imported, mut bodies, mut data) = (0u32, Vec::new(), 0usize);
        let mut names = std::collections::HashMap::new();
        for payload in Parser::new(0).parse_all(&bytes) {
            match payload? {
                Payload::ImportSection(imports) => {
                    for import in imports {
                        if matches!(import?.ty, TypeRef::Func(_)) {
                            imported += 1;
                        }
                    }
                }
                Payload::CodeSectionEntry(body) => bodies.push(body.range().len()),
                Payload::DataSection(segments) => {
                    for segment in segments {
                        data += segment?.data.len();
                    }
                }
                Payload::CustomSection(section) if section.name() == "name" => {
                    let reader = BinaryReader::new(section.data(), section.data_offset());
                    for name in NameSectionReader::new(reader) {
                        if let Name::Function(map) = name? {
                            for naming in map {
                                let naming = naming?;
                                let readable = rustc_demangle::demangle(naming.name);
                                names.insert(naming.index, format!("{readable:#}"));
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        let mut groups: std::collections::HashMap<&'static str, (usize, usize)> =
            std::collections::HashMap::new();
        let mut functions = Vec::new();
        for (i, size) in bodies.into_iter().enumerate() {
            let index = imported + u32::try_from(i)?;
            let name = names.remove(&index).unwrap_or_default();
            let group = groups.entry(code_group(&name)).or_default();
            group.0 += size;
            group.1 += 1;
            functions.push((name, size));
        }
        groups.insert("data segments (strings, tables)", (data, 1));
        let mut groups: Vec<_> = groups.into_iter().map(|(g, (b, n))| (g, b, n)).collect();
        groups.sort_by_key(|g| std::cmp::Reverse(g.1));
        functions.sort_by_key(|f| std::cmp::Reverse(f.1));
        functions.truncate(12);
        Ok(SizeBreakdown {
            total: groups.iter().map(|g| g.1).sum(),
            groups,
            largest: functions,
        })
    }
}

/// The groups of code, first match wins: what a function's demangled name
/// contains, and the group's label.
const CODE_GROUPS: &[(&[&str], &str)] = &[
    (&["serde_path_to_error"], "serde_path_to_error"),
    (
        &["serde", "Deserialize", "Visitor"],
        "serde (derive and serde_json)",
    ),
    (&["regex_lite"], "regex-lite"),
    (&["fmt", "Display", "Debug"], "formatting (core::fmt)"),
    (&["panic"], "panics"),
    (&["meshwasm_core"], "meshwasm-core"),
    (&["meshwasm_plugin"], "meshwasm-plugin"),
    (&["proxy_wasm"], "proxy-wasm"),
    (&["alloc"], "alloc (collections, strings, the allocator)"),
    (&["meshwasm"], "the filter crate"),
];

/// The group a function's (demangled) name puts it in.
fn code_group(name: &str) -> &'static str {
    CODE_GROUPS
        .iter()
        .find(|(marks, _)| marks.iter().any(|m| name.contains(m)))
        .map_or("core and std (iterators, slices, ...)", |(_, group)| group)
}
