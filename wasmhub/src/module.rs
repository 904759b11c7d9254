//! Checks that a file is a Proxy-Wasm module before it is packed, and reads
//! the ABI versions it exports.

use std::fmt;

use wasmparser::{Encoding, Parser, Payload};

/// The magic bytes every Wasm binary starts with.
pub const WASM_MAGIC: &[u8; 4] = b"\0asm";

/// The export prefix by which a Proxy-Wasm module declares its ABI version.
const ABI_EXPORT_PREFIX: &str = "proxy_abi_version_";

/// Why bytes are not a Proxy-Wasm module.
#[derive(thiserror::Error, Debug, PartialEq, Eq)]
pub enum ModuleError {
    /// The bytes do not start with `\0asm`.
    #[error("not a WebAssembly module: it starts with {found}, not 00 61 73 6d (\\0asm)")]
    NotWasm {
        /// The first bytes found, in hex.
        found: String,
    },
    /// A Wasm component, which Envoy cannot load.
    #[error("a WebAssembly component, not a core module: Proxy-Wasm hosts load core modules")]
    Component,
    /// The binary does not parse.
    #[error("not a valid WebAssembly module: {reason}")]
    Malformed {
        /// The parser's message, with the byte offset.
        reason: String,
    },
    /// A valid module that exports no `proxy_abi_version_*` function.
    #[error(
        "a WebAssembly module, but not a Proxy-Wasm one: it exports no proxy_abi_version_* function"
    )]
    NotProxyWasm,
}

/// A Proxy-Wasm ABI version, as a module declares it with an export such as
/// `proxy_abi_version_0_2_1`. Displayed as `0.2.1`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct AbiVersion(String);

impl AbiVersion {
    /// The version as `0.2.1`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AbiVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What the check learned about a Proxy-Wasm module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyWasmModule {
    abi_versions: Vec<AbiVersion>,
}

impl ProxyWasmModule {
    /// Parses `bytes` as a core Wasm module that exports at least one
    /// `proxy_abi_version_*` function.
    ///
    /// # Errors
    ///
    /// [`ModuleError`] says which check failed: the magic bytes, a component
    /// instead of a module, a parse error, or no ABI export.
    ///
    /// # Examples
    ///
    /// ```
    /// use wasmhub::module::{ModuleError, ProxyWasmModule};
    ///
    /// // (module (func (export "proxy_abi_version_0_2_1")))
    /// let module = wasmhub::image::tests_support::minimal_proxy_wasm_module();
    /// let parsed = ProxyWasmModule::parse(&module)?;
    /// assert_eq!(parsed.abi_versions()[0].as_str(), "0.2.1");
    ///
    /// assert!(matches!(
    ///     ProxyWasmModule::parse(b"GIF89a"),
    ///     Err(ModuleError::NotWasm { .. })
    /// ));
    /// # Ok::<(), ModuleError>(())
    /// ```
    pub fn parse(bytes: &[u8]) -> Result<Self, ModuleError> {
        if !bytes.starts_with(WASM_MAGIC) {
            let found = match bytes.len() {
                0 => "an empty file".to_string(),
                _ => bytes
                    .iter()
                    .take(4)
                    .map(|b| format!("{b:02x}"))
                    .collect::<Vec<_>>()
                    .join(" "),
            };
            return Err(ModuleError::NotWasm { found });
        }
        let mut abi_versions = Vec::new();
        for payload in Parser::new(0).parse_all(bytes) {
            let malformed = |e: wasmparser::BinaryReaderError| ModuleError::Malformed {
                reason: e.to_string(),
            };
            match payload.map_err(malformed)? {
                Payload::Version {
                    encoding: Encoding::Component,
                    ..
                } => return Err(ModuleError::Component),
                Payload::ExportSection(exports) => {
                    for export in exports {
                        let export = export.map_err(malformed)?;
                        if let Some(version) = export.name.strip_prefix(ABI_EXPORT_PREFIX) {
                            abi_versions.push(AbiVersion(version.replace('_', ".")));
                        }
                    }
                }
                _ => {}
            }
        }
        if abi_versions.is_empty() {
            return Err(ModuleError::NotProxyWasm);
        }
        abi_versions.sort();
        Ok(ProxyWasmModule { abi_versions })
    }

    /// The ABI versions the module exports, lowest first.
    pub fn abi_versions(&self) -> &[AbiVersion] {
        &self.abi_versions
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::tests_support::module_exporting;

    #[test]
    fn reads_every_abi_version_export() {
        let module = module_exporting(&[
            "proxy_on_memory_allocate",
            "proxy_abi_version_0_2_1",
            "proxy_abi_version_0_1_0",
        ]);
        let parsed = ProxyWasmModule::parse(&module).unwrap();
        let versions: Vec<&str> = parsed
            .abi_versions()
            .iter()
            .map(AbiVersion::as_str)
            .collect();
        assert_eq!(versions, ["0.1.0", "0.2.1"]);
    }

    #[test]
    fn refuses_what_envoy_could_not_load() {
        assert_eq!(
            ProxyWasmModule::parse(b""),
            Err(ModuleError::NotWasm {
                found: "an empty file".into()
            })
        );
        assert_eq!(
            ProxyWasmModule::parse(b"{\"hosts\": []}"),
            Err(ModuleError::NotWasm {
                found: "7b 22 68 6f".into()
            })
        );
        assert_eq!(
            ProxyWasmModule::parse(&module_exporting(&["_start", "memory"])),
            Err(ModuleError::NotProxyWasm)
        );
        let truncated = &module_exporting(&["proxy_abi_version_0_2_1"])[..20];
        assert!(matches!(
            ProxyWasmModule::parse(truncated),
            Err(ModuleError::Malformed { ref reason }) if reason.contains("offset")
        ));
        // A component: the same magic, layer 1 in the version field.
        assert_eq!(
            ProxyWasmModule::parse(b"\0asm\x0d\0\x01\0"),
            Err(ModuleError::Component)
        );
    }
}
