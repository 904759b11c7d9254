//! Reading scenario files: YAML or JSON, with the line, column and field
//! of every error.

use super::format::{PluginEntry, Scenario, ScenarioError};
use crate::PropertyValue;
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
    /// // A plugin of ticks and queues alone: no requests.
    /// assert!(Scenario::from_yaml("s.yaml", "filter: f.wasm\nadvance: 5s\n").is_ok());
    /// let err = Scenario::from_yaml("s.yaml", "filter: f.wasm\nproperties: {a: [1]}\n").unwrap_err();
    /// assert!(err.to_string().starts_with("s.yaml: line 2, column 14: properties.a: "), "{err}");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_yaml(path: impl AsRef<Path>, text: &str) -> Result<Scenario, ScenarioError> {
        let path = path.as_ref();
        let document = yaml_document(path, text)?;
        let mut scenario: Scenario = from_document(path, &document)?;
        scenario.source = path.to_path_buf();
        let fail = |field: &str, message: String| {
            let at = document
                .position(field)
                .map(|p| format!("{p}: "))
                .unwrap_or_default();
            ScenarioError {
                path: path.display().to_string(),
                message: format!("{at}{field}: {message}"),
            }
        };
        if !scenario.plugins.is_empty() && !scenario.requests.is_empty() {
            return Err(fail(
                "plugins",
                "a scenario with several plugins plays no requests (sdk-host gives each stream to one plugin); give them their own scenario".into(),
            ));
        }
        for (name, value) in &scenario.properties {
            let mut checked = Vec::new();
            flatten(split(name), value, &mut checked)
                .map_err(|e| fail(&format!("properties.{name}"), e))?;
        }
        Ok(scenario)
    }

    /// The `properties:` as the host serves them, by path segments: a key
    /// is split at its dots, and a map below it adds its keys whole (so a
    /// segment may hold dots, as filter names do); strings are text,
    /// integers and booleans in Envoy's encodings.
    ///
    /// # Errors
    ///
    /// A value that is not a string, number, boolean or map (named by path).
    ///
    /// ```
    /// use sdk_host::{PropertyValue, scenario::Scenario};
    /// let yaml = "filter: f.wasm\nproperties:\n  upstream.port: 8080\n  metadata.filter_metadata: {envoy.filters.http.lua: {tag: t}}\n";
    /// let properties = Scenario::from_yaml("s.yaml", yaml)?.property_values()?;
    /// let lua = ["metadata", "filter_metadata", "envoy.filters.http.lua", "tag"].map(String::from).to_vec();
    /// assert_eq!(properties[0], (lua, PropertyValue::from("t")));
    /// assert_eq!(properties[1].1, PropertyValue::Int(8080));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn property_values(&self) -> Result<Vec<(Vec<String>, PropertyValue)>, String> {
        let mut out = Vec::new();
        for (name, value) in &self.properties {
            flatten(split(name), value, &mut out).map_err(|e| format!("properties.{name}: {e}"))?;
        }
        Ok(out)
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

    /// The name of a plugin of `plugins:`: its own, or the scenario's and
    /// its root id.
    ///
    /// ```
    /// use sdk_host::scenario::Scenario;
    /// let scenario = Scenario::from_yaml("queue.yaml", "filter: f.wasm\nplugins: [{rootId: receiver}]\n")?;
    /// assert_eq!(scenario.extra_plugin_name(&scenario.plugins[0]), "queue-receiver");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn extra_plugin_name(&self, plugin: &PluginEntry) -> String {
        if plugin.name.is_empty() {
            format!("{}-{}", self.plugin_name(), plugin.root_id)
        } else {
            plugin.name.clone()
        }
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

fn split(name: &str) -> Vec<String> {
    name.split('.').map(str::to_string).collect()
}

/// Each leaf below `path` with its segments: a map's keys are segments.
fn flatten(
    path: Vec<String>,
    value: &Value,
    out: &mut Vec<(Vec<String>, PropertyValue)>,
) -> Result<(), String> {
    let leaf = match value {
        Value::String(text) => PropertyValue::String(text.clone()),
        Value::Bool(b) => PropertyValue::Bool(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => PropertyValue::Int(i),
            None => PropertyValue::Double(n.as_f64().unwrap_or_default()),
        },
        Value::Object(fields) => {
            for (key, inner) in fields {
                let mut below = path.clone();
                below.push(key.clone());
                flatten(below, inner, out).map_err(|e| format!("{key}: {e}"))?;
            }
            return Ok(());
        }
        other => {
            return Err(format!(
                "{other} is not a property value: give a string, a number, a boolean, or a map whose keys continue the path"
            ));
        }
    };
    out.push((path, leaf));
    Ok(())
}

pub(super) fn configuration(value: &Value) -> Vec<u8> {
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
