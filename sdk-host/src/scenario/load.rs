//! Reading scenario files: YAML or JSON, with the line, column and field
//! of every error.

use super::format::{Scenario, ScenarioError};
use serde_json::Value;
use std::path::{Path, PathBuf};
use yaml_doc::Document;

impl Scenario {
    /// Reads a scenario from a YAML or JSON file.
    ///
    /// # Errors
    ///
    /// The file cannot be read or is not a scenario; the message names the
    /// line, column and field.
    ///
    /// ```no_run
    /// use sdk_host::{scenario::Scenario, WasmModule};
    /// let scenario = Scenario::from_file("tests/scenarios/deny-admin.yaml")?;
    /// let report = scenario.run(&WasmModule::from_file(scenario.filter_path())?)?;
    /// assert!(report.passed(), "{:#?}", report.failures);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_file(path: impl AsRef<Path>) -> Result<Scenario, ScenarioError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| ScenarioError {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
        Scenario::from_yaml(path, &text)
    }

    /// Reads a scenario from YAML (or JSON) text; `path` names it in errors
    /// and anchors relative `filter` paths.
    ///
    /// # Errors
    ///
    /// As [`from_file`](Self::from_file).
    ///
    /// ```
    /// use sdk_host::scenario::Scenario;
    /// let scenario = Scenario::from_yaml("dir/s.yaml", "filter: f.wasm\nconfig: {a: 1}\nrequests: [{}]\n")?;
    /// assert_eq!(scenario.config_bytes(), br#"{"a":1}"#);
    /// assert!(Scenario::from_yaml("s.yaml", "filter: f.wasm\nrequests: []\n").is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_yaml(path: impl AsRef<Path>, text: &str) -> Result<Scenario, ScenarioError> {
        let path = path.as_ref();
        let mut scenario: Scenario = load_yaml(path, text)?;
        scenario.source = path.to_path_buf();
        if scenario.requests.is_empty() {
            return Err(ScenarioError {
                path: path.display().to_string(),
                message: "requests: at least one request is needed".into(),
            });
        }
        Ok(scenario)
    }

    /// The plugin's name: the file's stem.
    ///
    /// ```
    /// use sdk_host::scenario::Scenario;
    /// let scenario = Scenario::from_yaml("tests/deny-admin.yaml", "filter: f.wasm\nrequests: [{}]\n")?;
    /// assert_eq!(scenario.plugin_name(), "deny-admin");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn plugin_name(&self) -> String {
        self.source
            .file_stem()
            .map_or_else(|| "scenario".into(), |s| s.to_string_lossy().into_owned())
    }

    /// `filter` as a path, relative to the scenario's directory.
    ///
    /// ```
    /// use sdk_host::scenario::Scenario;
    /// use std::path::Path;
    /// let scenario = Scenario::from_yaml("tests/s.yaml", "filter: ../f.wasm\nrequests: [{}]\n")?;
    /// assert_eq!(scenario.filter_path(), Path::new("tests/../f.wasm"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn filter_path(&self) -> PathBuf {
        self.source
            .parent()
            .unwrap_or(Path::new(""))
            .join(&self.filter)
    }

    /// The plugin configuration as the filter gets it.
    ///
    /// ```
    /// use sdk_host::scenario::Scenario;
    /// let as_text = Scenario::from_yaml("s.yaml", "filter: f.wasm\nconfig: 'deny /admin'\nrequests: [{}]\n")?;
    /// assert_eq!(as_text.config_bytes(), b"deny /admin");
    /// let as_json = Scenario::from_yaml("s.yaml", "filter: f.wasm\nconfig: [1, 2]\nrequests: [{}]\n")?;
    /// assert_eq!(as_json.config_bytes(), b"[1,2]");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn config_bytes(&self) -> Vec<u8> {
        configuration(&self.config)
    }

    /// The VM configuration as the filter gets it.
    ///
    /// ```
    /// use sdk_host::scenario::Scenario;
    /// let scenario = Scenario::from_yaml("s.yaml", "filter: f.wasm\nvmConfig: {workers: 2}\nrequests: [{}]\n")?;
    /// assert_eq!(scenario.vm_config_bytes(), br#"{"workers":2}"#);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn vm_config_bytes(&self) -> Vec<u8> {
        configuration(&self.vm_config)
    }
}

fn configuration(value: &Value) -> Vec<u8> {
    match value {
        Value::Null => Vec::new(),
        Value::String(text) => text.as_bytes().to_vec(),
        other => other.to_string().into_bytes(),
    }
}

/// Deserializes a YAML or JSON document into `T`; errors name the file,
/// the line and column, and the field path.
///
/// # Errors
///
/// The text is not YAML, holds more than one document, or does not fit `T`.
///
/// ```
/// use std::path::Path;
/// #[derive(serde::Deserialize)]
/// struct Limits { max: u32 }
/// let limits: Limits = sdk_host::scenario::load_yaml(Path::new("l.yaml"), "max: 3\n")?;
/// assert_eq!(limits.max, 3);
/// let err = sdk_host::scenario::load_yaml::<Limits>(Path::new("l.yaml"), "max: lots\n").err();
/// let message = err.map(|e| e.to_string()).unwrap_or_default();
/// assert!(message.starts_with("l.yaml: line 1, column 1: max: invalid type"), "{message}");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn load_yaml<T: serde::de::DeserializeOwned>(
    path: &Path,
    text: &str,
) -> Result<T, ScenarioError> {
    from_document(path, &yaml_document(path, text)?)
}

/// Parses the one YAML (or JSON) document in `text`, keeping positions.
///
/// # Errors
///
/// The text is not YAML, or holds more than one document.
///
/// ```
/// use std::path::Path;
/// let document = sdk_host::scenario::yaml_document(Path::new("r.yaml"), "requests: []\n")?;
/// assert!(document.value.get("requests").is_some());
/// assert!(sdk_host::scenario::yaml_document(Path::new("r.yaml"), "a: 1\n---\nb: 2\n").is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn yaml_document(path: &Path, text: &str) -> Result<Document, ScenarioError> {
    let fail = |message: String| ScenarioError {
        path: path.display().to_string(),
        message,
    };
    let mut documents = yaml_doc::load(text).map_err(|e| fail(e.to_string()))?;
    match documents.len() {
        1 => Ok(documents.remove(0)),
        n => Err(fail(format!("expected one YAML document, found {n}"))),
    }
}

/// Deserializes a parsed document into `T`; errors name the line and field.
///
/// # Errors
///
/// The document does not fit `T`.
///
/// ```
/// use sdk_host::scenario::{from_document, yaml_document, Exchange};
/// use std::path::Path;
/// let path = Path::new("r.yaml");
/// let document = yaml_document(path, "headers: {\":path\": /x}\n")?;
/// let exchange: Exchange = from_document(path, &document)?;
/// assert_eq!(exchange.headers.len(), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn from_document<T: serde::de::DeserializeOwned>(
    path: &Path,
    document: &Document,
) -> Result<T, ScenarioError> {
    serde_path_to_error::deserialize(&document.value).map_err(|e| {
        let field = e.path().to_string();
        let at = document
            .position(&field)
            .map(|p| format!("{p}: "))
            .unwrap_or_default();
        ScenarioError {
            path: path.display().to_string(),
            message: format!("{at}{field}: {}", e.inner()),
        }
    })
}
