//! Errors of loading a module and of driving a host.

use crate::records::LogRecord;
use std::fmt;

/// Why a module cannot be loaded.
///
/// ```
/// use sdk_host::{LoadError, WasmModule};
/// let err = WasmModule::from_bytes("notes.txt", b"hello").unwrap_err();
/// assert!(matches!(err, LoadError::NotWasm { .. }));
/// assert_eq!(err.to_string(), "notes.txt: not a WebAssembly module (no \\0asm header)");
/// ```
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file cannot be read.
    #[error("{path}: {error}")]
    Read {
        /// The path given.
        path: String,
        /// The I/O error.
        error: std::io::Error,
    },
    /// The bytes do not start with the Wasm magic number.
    #[error("{name}: not a WebAssembly module (no \\0asm header)")]
    NotWasm {
        /// The module's name.
        name: String,
    },
    /// The runtime rejects the module.
    #[error("{name}: invalid WebAssembly module: {message}")]
    Invalid {
        /// The module's name.
        name: String,
        /// The runtime's reason.
        message: String,
    },
    /// The module lacks an export every Proxy-Wasm module has.
    #[error("{name}: not a Proxy-Wasm module: it does not export {export}")]
    MissingExport {
        /// The module's name.
        name: String,
        /// The missing export.
        export: String,
    },
    /// The module imports a function neither Envoy nor sdk-host provides.
    #[error("{name}: imports {import}, which Envoy does not provide (Envoy refuses to load it)")]
    UnknownImport {
        /// The module's name.
        name: String,
        /// `module.name` of the import.
        import: String,
    },
}

/// Why driving a host failed.
///
/// ```
/// # let module = sdk_host::doc_support::pass_through()?;
/// use sdk_host::Error;
/// let mut host = sdk_host::Host::builder().start(&module)?;
/// let err = host.send_request_headers(999, &[(":path", "/")], true).unwrap_err();
/// assert!(matches!(err, Error::NotFound { id: 999, .. }), "{err}");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The guest trapped; the VM is failed from now on, as in Envoy.
    #[error(transparent)]
    Trap(#[from] GuestTrap),
    /// The VM failed earlier; Envoy would not call it again.
    #[error("the VM failed earlier ({0}); Envoy no longer calls it")]
    VmFailed(String),
    /// `proxy_on_vm_start` or `proxy_on_configure` returned false, which
    /// makes Envoy reject the plugin.
    #[error(
        "{callback} returned false for plugin {plugin}: Envoy rejects the configuration{}",
        last_error(logs)
    )]
    Rejected {
        /// The callback.
        callback: &'static str,
        /// The plugin's name.
        plugin: String,
        /// What the guest logged while starting.
        logs: Vec<LogRecord>,
    },
    /// The test asked for something the stream's state does not allow,
    /// e.g. request headers twice.
    #[error("{0}")]
    Usage(String),
    /// The stream, call or plugin named does not exist.
    #[error("no such {kind} {id}")]
    NotFound {
        /// What was looked up.
        kind: &'static str,
        /// Its id.
        id: u32,
    },
}

fn last_error(logs: &[LogRecord]) -> String {
    logs.iter()
        .rev()
        .find(|r| r.level >= crate::types::LogLevel::Warn)
        .map(|r| format!(" (guest logged: {})", r.message))
        .unwrap_or_default()
}

/// The guest trapped (a panic under `panic = "abort"`, `unreachable`, an
/// out-of-bounds access, `proc_exit`): Envoy marks such a VM failed.
///
/// ```
/// # let module = sdk_host::doc_support::module("crash.wasm", r#"(func (export "proxy_on_vm_start") (param i32 i32) (result i32) unreachable)"#)?;
/// let err = sdk_host::Host::builder().start(&module).unwrap_err();
/// let sdk_host::Error::Trap(trap) = err else { panic!("not a trap: {err}") };
/// assert_eq!(trap.export, "proxy_on_vm_start");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestTrap {
    /// The export that was running.
    pub export: &'static str,
    /// The runtime's description, with the guest backtrace when there is one.
    pub message: String,
    /// What the guest logged with `proxy_log` in the call that trapped,
    /// before the trap.
    pub logs: Vec<LogRecord>,
    /// What it wrote to stdout and stderr in that call, as written: a Rust
    /// panic's message, Go's panic and goroutine dump (which Envoy logs one
    /// write per line).
    pub output: String,
}

impl GuestTrap {
    pub(crate) fn new(export: &'static str, error: &dyn fmt::Display) -> GuestTrap {
        GuestTrap {
            export,
            message: format!("{error:#}"),
            logs: Vec::new(),
            output: String::new(),
        }
    }

    /// Adds what the guest logged and wrote in the call that trapped: the
    /// records of `logs` from index `from` on, but for those at `written`
    /// (its stdout and stderr, given whole as `output`).
    pub(crate) fn with_guest_output(
        mut self,
        logs: &[LogRecord],
        from: usize,
        written: &[usize],
        output: &[u8],
    ) -> GuestTrap {
        self.logs = logs
            .iter()
            .enumerate()
            .skip(from)
            .filter(|(i, _)| !written.contains(i))
            .map(|(_, record)| record.clone())
            .collect();
        self.output = String::from_utf8_lossy(output).into_owned();
        self
    }

    /// One line: where it trapped and the runtime's first line, as a failed
    /// VM's reason.
    ///
    /// ```
    /// # let module = sdk_host::doc_support::module("crash.wasm", r#"(func (export "proxy_on_vm_start") (param i32 i32) (result i32) unreachable)"#)?;
    /// let Err(sdk_host::Error::Trap(trap)) = sdk_host::Host::builder().start(&module) else { panic!() };
    /// assert!(trap.summary().starts_with("the guest trapped in proxy_on_vm_start: "), "{}", trap.summary());
    /// assert!(!trap.summary().contains('\n'));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn summary(&self) -> String {
        let first = self.message.lines().next().unwrap_or_default();
        format!("the guest trapped in {}: {first}", self.export)
    }
}

impl std::error::Error for GuestTrap {}

/// The guest's lines first, then the trap with its backtrace, once.
impl fmt::Display for GuestTrap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the guest trapped in {}", self.export)?;
        if !self.logs.is_empty() || !self.output.is_empty() {
            f.write_str("\nwhat it logged before the trap:")?;
            for record in &self.logs {
                write!(f, "\n  [{}] {}", record.level, record.message)?;
            }
            for line in self.output.lines() {
                write!(f, "\n  | {line}")?;
            }
            f.write_str("\nthe trap")?;
        }
        write!(f, ": {}", self.message)
    }
}
