//! Registry credentials, found and stored the way the docker CLI does, so
//! that wasmhub pushes wherever `docker login` (or `wasmhub login`) was run,
//! and a `wasmhub login` is seen by docker, podman, oras and crane too.
//!
//! The source of truth is docker's `config.json` (`$DOCKER_CONFIG/config.json`,
//! else `~/.docker/config.json`), see [`default_config_path`]. For a registry,
//! [`DockerConfig::credentials_for`] asks, in order:
//!
//! 1. the credential helper named in `credHelpers` for that registry;
//! 2. the global helper named in `credsStore`;
//! 3. the `auths` entry for that registry.
//!
//! A helper that answers "credentials not found" defers to the next source;
//! nothing found anywhere means anonymous access. Helpers are the programs
//! `docker-credential-<name>` of docker's credential-helper protocol.
//!
//! Every function takes the configuration file explicitly, and the helper
//! search path can be replaced ([`DockerConfig::with_helper_dir`]), so that
//! nothing but [`default_config_path`] and [`DockerConfig::load_default`]
//! reads the environment.

use std::fmt;
use std::fs;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use oci_client::secrets::RegistryAuth;
use serde::{Deserialize, Serialize as _};
use serde_json::{Map, Value};

/// The file name inside the docker configuration directory.
const CONFIG_FILE: &str = "config.json";
/// The key docker uses for Docker Hub, in `auths` and with helpers.
const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";
/// The host every Docker Hub alias normalises to.
const DOCKER_HUB_HOST: &str = "index.docker.io";
/// The prefix of every credential helper program.
const HELPER_PREFIX: &str = "docker-credential-";
/// The username with which a helper says that its secret is an identity token.
const IDENTITY_TOKEN_USERNAME: &str = "<token>";
/// What helpers print (in `credentials not found in native keychain`) when
/// they have nothing for a server.
const NOT_FOUND_MESSAGE: &str = "credentials not found";
/// How much of a failing helper's output an error quotes.
const MAX_HELPER_OUTPUT: usize = 500;

/// Standard base64, with or without padding: docker writes it padded, but
/// hand-written configuration files are not always.
const BASE64_LENIENT: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Why credentials could not be found, used or stored.
///
/// No message ever contains a password, token or `auth` value.
#[derive(thiserror::Error, Debug)]
#[non_exhaustive]
pub enum CredentialError {
    /// Neither `DOCKER_CONFIG` nor a home directory is set.
    #[error("cannot locate the docker configuration: neither DOCKER_CONFIG nor HOME is set")]
    NoConfigPath,

    /// The configuration file exists but cannot be read.
    #[error("cannot read docker configuration {}: {source}", path.display())]
    Read {
        /// The configuration file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },

    /// The configuration file is not JSON.
    #[error("docker configuration {} is not valid JSON: {message}", path.display())]
    Json {
        /// The configuration file.
        path: PathBuf,
        /// The line of the error, from 1.
        line: usize,
        /// The column of the error, from 1.
        column: usize,
        /// serde_json's description, which ends with the line and column.
        message: String,
    },

    /// A field of the configuration file has the wrong JSON type.
    #[error("docker configuration {}: `{field}` must be {expected}", path.display())]
    InvalidField {
        /// The configuration file.
        path: PathBuf,
        /// The field, e.g. `credHelpers["ghcr.io"]`.
        field: String,
        /// What the field must be, e.g. `a JSON object`.
        expected: &'static str,
    },

    /// An `auths` entry cannot be turned into credentials.
    #[error("docker configuration {}: the `auths` entry \"{key}\" {problem}", path.display())]
    InvalidAuth {
        /// The configuration file.
        path: PathBuf,
        /// The key of the entry in `auths`, as written in the file.
        key: String,
        /// What is wrong, never quoting the secret.
        problem: String,
    },

    /// The stored credential is an identity token.
    ///
    /// An identity token (`identitytoken` in `auths`, or a helper's `<token>`
    /// username) is an OAuth2 refresh token that docker trades for access
    /// tokens; it is neither a password nor a bearer token.
    #[error(
        "the saved credentials for {registry} are an identity token (an OAuth2 refresh token \
         from a browser or single-sign-on login), which wasmhub cannot use; log in to {registry} \
         again with a username and a password or access token instead (`wasmhub login` or \
         `docker login --username`)"
    )]
    IdentityTokenUnsupported {
        /// The registry, as asked for.
        registry: String,
    },

    /// The registry is not a `host[:port]`.
    #[error("`{registry}` is not a registry host[:port]")]
    InvalidRegistry {
        /// The registry, as given.
        registry: String,
    },

    /// The username cannot be stored in docker's `user:password` format.
    #[error("cannot store credentials for {registry}: the username is empty or contains ':'")]
    InvalidUsername {
        /// The registry.
        registry: String,
    },

    /// A helper name is not a plain name.
    #[error(
        "credential helper name \"{name}\" (configured as {configured_as} in {}) must not \
         contain a path separator",
        path.display()
    )]
    InvalidHelperName {
        /// The helper name, as configured.
        name: String,
        /// Where it is configured: `credsStore` or `credHelpers["host"]`.
        configured_as: String,
        /// The configuration file.
        path: PathBuf,
    },

    /// The helper program is not installed.
    #[error("{program} not found on PATH (configured as {configured_as} in {})", path.display())]
    HelperNotFound {
        /// The program, `docker-credential-<name>`.
        program: String,
        /// Where it is configured: `credsStore` or `credHelpers["host"]`.
        configured_as: String,
        /// The configuration file.
        path: PathBuf,
    },

    /// The helper program could not be run.
    #[error("cannot run {}: {source}", program.display())]
    HelperRun {
        /// The program's path.
        program: PathBuf,
        /// The I/O error.
        source: io::Error,
    },

    /// The helper ran and failed.
    #[error("{program} {action} failed ({status}): {output}")]
    HelperFailed {
        /// The program, `docker-credential-<name>`.
        program: String,
        /// The helper action: `get`, `store` or `erase`.
        action: &'static str,
        /// The exit status.
        status: String,
        /// Its standard error, else its standard output, trimmed.
        output: String,
    },

    /// The helper's `get` answer is not the protocol's JSON.
    #[error(
        "{program} get printed an invalid answer (line {line}, column {column}): expected \
         {{\"ServerURL\":…,\"Username\":…,\"Secret\":…}}"
    )]
    HelperOutput {
        /// The program, `docker-credential-<name>`.
        program: String,
        /// The line of the error, from 1.
        line: usize,
        /// The column of the error, from 1.
        column: usize,
    },

    /// The configuration file cannot be written.
    #[error("cannot write docker configuration {}: {source}", path.display())]
    Write {
        /// The file or directory that failed.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
}

/// Where [`DockerConfig::store`] put the credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredIn {
    /// In the credential helper of this name (the program is
    /// `docker-credential-<name>`).
    Helper(String),
    /// In plain text (base64) in this configuration file.
    File(PathBuf),
}

impl fmt::Display for StoredIn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoredIn::Helper(name) => write!(f, "credential helper {HELPER_PREFIX}{name}"),
            StoredIn::File(path) => write!(f, "{}", path.display()),
        }
    }
}

/// The docker configuration file's location: `$DOCKER_CONFIG/config.json`
/// if `DOCKER_CONFIG` is set, else `$HOME/.docker/config.json`; `None`
/// without either.
///
/// This is the only function of this module, with
/// [`DockerConfig::load_default`], that reads the environment.
pub fn default_config_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|dir| !dir.is_empty()) {
        return Some(PathBuf::from(dir).join(CONFIG_FILE));
    }
    std::env::home_dir()
        .filter(|home| !home.as_os_str().is_empty())
        .map(|home| home.join(".docker").join(CONFIG_FILE))
}

/// A docker `config.json`: where to find and where to store registry
/// credentials.
///
/// The whole JSON document is kept, so that [`save`](Self::save) preserves
/// every field, including those of other tools. Its `Debug` output shows
/// registry names but never credentials.
///
/// # Examples
///
/// ```
/// use oci_client::secrets::RegistryAuth;
/// use wasmhub::credentials::{DockerConfig, StoredIn};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let path = dir.path().join("config.json");
///
/// // A missing file is an empty configuration: anonymous access.
/// let mut config = DockerConfig::load(&path)?;
/// assert_eq!(config.credentials_for("ghcr.io")?, RegistryAuth::Anonymous);
///
/// // `wasmhub login`: no helper is configured, so the file holds them.
/// let stored = config.store("ghcr.io", "octocat", "ghp_secret")?;
/// assert_eq!(stored, StoredIn::File(path.clone()));
///
/// // `wasmhub push`, later.
/// let config = DockerConfig::load(&path)?;
/// assert_eq!(
///     config.credentials_for("ghcr.io")?,
///     RegistryAuth::Basic("octocat".into(), "ghp_secret".into())
/// );
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct DockerConfig {
    /// The file it was loaded from and is saved to.
    path: PathBuf,
    /// The whole document, checked by `load` to have the shapes used here.
    json: Map<String, Value>,
    /// Where helper programs are looked up; `None` means `PATH`.
    helper_dirs: Option<Vec<PathBuf>>,
}

impl fmt::Debug for DockerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let auths: Vec<&String> = self.auths().map(|a| a.keys().collect()).unwrap_or_default();
        let helpers: Vec<(&String, &str)> = self
            .cred_helpers()
            .map(|h| {
                h.iter()
                    .filter_map(|(k, v)| Some((k, v.as_str()?)))
                    .collect()
            })
            .unwrap_or_default();
        f.debug_struct("DockerConfig")
            .field("path", &self.path)
            .field("auths", &auths)
            .field("creds_store", &self.creds_store())
            .field("cred_helpers", &helpers)
            .field("helper_dirs", &self.helper_dirs)
            .field("credentials", &"<redacted>")
            .finish()
    }
}

impl DockerConfig {
    /// Reads the configuration file at `path`.
    ///
    /// A missing (or empty) file is an empty configuration, not an error;
    /// the first [`store`](Self::store) creates it.
    ///
    /// # Errors
    ///
    /// [`CredentialError::Read`] if the file cannot be read,
    /// [`CredentialError::Json`] (with the line and column) if it is not
    /// JSON, [`CredentialError::InvalidField`] if `auths`, `credsStore` or
    /// `credHelpers` have the wrong type.
    ///
    /// # Examples
    ///
    /// ```
    /// use wasmhub::credentials::DockerConfig;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("config.json");
    /// std::fs::write(&path, "{\n  \"auths\": {,\n}")?;
    ///
    /// let error = DockerConfig::load(&path).unwrap_err().to_string();
    /// assert!(error.contains("config.json"));
    /// assert!(error.contains("line 2"));
    /// # Ok(())
    /// # }
    /// ```
    pub fn load(path: &Path) -> Result<Self, CredentialError> {
        let bytes = match fs::read(path) {
            Ok(bytes) => bytes,
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                return Ok(Self::empty(path));
            }
            Err(source) => {
                return Err(CredentialError::Read {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        // docker accepts an empty file as an empty configuration.
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self::empty(path));
        }
        // Parsed as a `Value` first: its errors are syntax errors, which
        // never quote the document (and so never a secret).
        let value: Value =
            serde_json::from_slice(&bytes).map_err(|error| CredentialError::Json {
                path: path.to_owned(),
                line: error.line(),
                column: error.column(),
                message: error.to_string(),
            })?;
        let Value::Object(json) = value else {
            return Err(CredentialError::InvalidField {
                path: path.to_owned(),
                field: "(top level)".to_owned(),
                expected: "a JSON object",
            });
        };
        let config = DockerConfig {
            path: path.to_owned(),
            json,
            helper_dirs: None,
        };
        config.check()?;
        Ok(config)
    }

    /// Reads the configuration at [`default_config_path`].
    ///
    /// # Errors
    ///
    /// [`CredentialError::NoConfigPath`] if neither `DOCKER_CONFIG` nor a
    /// home directory is set, else as [`load`](Self::load).
    pub fn load_default() -> Result<Self, CredentialError> {
        let path = default_config_path().ok_or(CredentialError::NoConfigPath)?;
        Self::load(&path)
    }

    /// Looks credential helpers (`docker-credential-<name>`) up in `dir`
    /// instead of on `PATH`.
    ///
    /// For tests and sandboxes: it changes no environment variable.
    #[must_use]
    pub fn with_helper_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.helper_dirs = Some(vec![dir.into()]);
        self
    }

    /// The configuration file this was loaded from and is saved to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The credentials for `registry`, a `host[:port]` such as `ghcr.io`,
    /// `127.0.0.1:5000` or `docker.io`.
    ///
    /// Looks in `credHelpers`, then `credsStore`, then `auths` (see the
    /// [module documentation](self)); [`RegistryAuth::Anonymous`] when none
    /// has credentials. `auths` keys match on their host and port only
    /// (`https://ghcr.io/` is `ghcr.io`), and `docker.io`,
    /// `index.docker.io` and `registry-1.docker.io` are all Docker Hub,
    /// docker's `https://index.docker.io/v1/`. An `auths` entry's
    /// `registrytoken` is a bearer token; its `auth` (base64 of
    /// `user:password`) or `username` and `password` are basic credentials.
    ///
    /// # Errors
    ///
    /// [`CredentialError::IdentityTokenUnsupported`] if the stored credential
    /// is an identity token; [`CredentialError::InvalidAuth`] for an `auth`
    /// that is not base64 of `user:password`; the helper errors
    /// ([`CredentialError::HelperNotFound`], [`CredentialError::HelperFailed`],
    /// …) if a configured helper is missing or fails.
    ///
    /// # Examples
    ///
    /// ```
    /// use oci_client::secrets::RegistryAuth;
    /// use wasmhub::credentials::DockerConfig;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("config.json");
    /// // base64("robot:pa:ss"), under docker's own spelling of Docker Hub.
    /// std::fs::write(
    ///     &path,
    ///     r#"{"auths": {"https://index.docker.io/v1/": {"auth": "cm9ib3Q6cGE6c3M="}}}"#,
    /// )?;
    ///
    /// let config = DockerConfig::load(&path)?;
    /// let robot = RegistryAuth::Basic("robot".into(), "pa:ss".into());
    /// assert_eq!(config.credentials_for("docker.io")?, robot);
    /// assert_eq!(config.credentials_for("registry-1.docker.io")?, robot);
    /// assert_eq!(config.credentials_for("quay.io")?, RegistryAuth::Anonymous);
    /// # Ok(())
    /// # }
    /// ```
    pub fn credentials_for(&self, registry: &str) -> Result<RegistryAuth, CredentialError> {
        let registry = Registry::parse(registry)?;
        if let Some(helper) = self.helper_for(&registry)
            && let Some(auth) = self.helper_get(&helper, &registry)?
        {
            return Ok(auth);
        }
        self.file_credentials(&registry)
    }

    /// Stores the credentials of a login to `registry`.
    ///
    /// If a helper is configured for it (`credHelpers`, else `credsStore`),
    /// they go to the helper, and any plain-text credentials for the same
    /// registry are removed from the file. Otherwise the file gets
    /// `auths[registry] = {"auth": base64(username:password)}`, replacing
    /// entries that spell the same registry differently (`https://host/`).
    /// The file, when changed, is saved before this returns.
    ///
    /// # Errors
    ///
    /// [`CredentialError::InvalidUsername`] for a username that is empty or
    /// contains `:`, the helper errors, and [`CredentialError::Write`].
    ///
    /// # Examples
    ///
    /// ```
    /// use wasmhub::credentials::{DockerConfig, StoredIn};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("config.json");
    /// std::fs::write(
    ///     &path,
    ///     r#"{"auths": {"https://127.0.0.1:5000/": {"auth": "b2xkOm9sZA=="}}, "psFormat": "table"}"#,
    /// )?;
    ///
    /// let mut config = DockerConfig::load(&path)?;
    /// let stored = config.store("127.0.0.1:5000", "admin", "s3cret")?;
    /// assert_eq!(stored, StoredIn::File(path.clone()));
    ///
    /// let saved = std::fs::read_to_string(&path)?;
    /// assert!(saved.contains("\"127.0.0.1:5000\""));
    /// assert!(!saved.contains("https://127.0.0.1:5000/"));
    /// assert!(saved.contains("psFormat"));
    /// # Ok(())
    /// # }
    /// ```
    pub fn store(
        &mut self,
        registry: &str,
        username: &str,
        password: &str,
    ) -> Result<StoredIn, CredentialError> {
        let registry = Registry::parse(registry)?;
        if username.is_empty() || username.contains(':') {
            return Err(CredentialError::InvalidUsername {
                registry: registry.given.to_owned(),
            });
        }
        if let Some(helper) = self.helper_for(&registry) {
            let payload = serde_json::json!({
                "ServerURL": registry.server_url(),
                "Username": username,
                "Secret": password,
            })
            .to_string();
            let output = self.run_helper(&helper, "store", payload.as_bytes())?;
            if !output.status.success() {
                return Err(helper_failed(&helper, "store", &output));
            }
            if self.remove_auth_entries(&registry, Removal::WithCredentials) {
                self.save()?;
            }
            return Ok(StoredIn::Helper(helper.name));
        }
        self.remove_auth_entries(&registry, Removal::All);
        let auth =
            base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
        let mut entry = Map::new();
        entry.insert("auth".to_owned(), Value::String(auth));
        self.insert_auth(registry.file_key(), Value::Object(entry));
        self.save()?;
        Ok(StoredIn::File(self.path.clone()))
    }

    /// Removes the credentials for `registry` (a logout): from its helper,
    /// if one is configured, and every `auths` entry for it from the file,
    /// which is then saved.
    ///
    /// Returns whether anything was removed.
    ///
    /// # Errors
    ///
    /// The helper errors (a helper without credentials for the registry is
    /// not an error), and [`CredentialError::Write`].
    ///
    /// # Examples
    ///
    /// ```
    /// use wasmhub::credentials::DockerConfig;
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let dir = tempfile::tempdir()?;
    /// let mut config = DockerConfig::load(&dir.path().join("config.json"))?;
    /// config.store("ghcr.io", "octocat", "ghp_secret")?;
    ///
    /// assert!(config.erase("ghcr.io")?);
    /// assert!(!config.erase("ghcr.io")?);
    /// # Ok(())
    /// # }
    /// ```
    pub fn erase(&mut self, registry: &str) -> Result<bool, CredentialError> {
        let registry = Registry::parse(registry)?;
        let mut removed = false;
        if let Some(helper) = self.helper_for(&registry) {
            let output = self.run_helper(&helper, "erase", registry.server_url().as_bytes())?;
            if output.status.success() {
                removed = true;
            } else if !is_not_found(&output) {
                return Err(helper_failed(&helper, "erase", &output));
            }
        }
        if self.remove_auth_entries(&registry, Removal::All) {
            removed = true;
            self.save()?;
        }
        Ok(removed)
    }

    /// Writes the configuration to its file, atomically: a temporary file in
    /// the same directory, renamed over the old one (through a symbolic
    /// link, to its target).
    ///
    /// Creates the directory (mode `0700` on Unix) if missing. The file is
    /// pretty JSON with tab indentation, as docker writes it, with mode
    /// `0600` on Unix, and keeps every field that was loaded.
    ///
    /// # Errors
    ///
    /// [`CredentialError::Write`] naming the file or directory that failed.
    pub fn save(&self) -> Result<(), CredentialError> {
        let target = resolve_symlink(&self.path);
        let write_error = |path: &Path| {
            let path = path.to_owned();
            move |source| CredentialError::Write { path, source }
        };
        let dir = match target.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
            _ => PathBuf::from("."),
        };
        create_dir(&dir).map_err(write_error(&dir))?;

        let mut text = Vec::new();
        let mut serializer = serde_json::Serializer::with_formatter(
            &mut text,
            serde_json::ser::PrettyFormatter::with_indent(b"\t"),
        );
        self.json
            .serialize(&mut serializer)
            .map_err(|error| write_error(&target)(io::Error::other(error)))?;
        text.push(b'\n');

        // tempfile creates the file with mode 0600 and removes it if the
        // write fails before the rename.
        let mut file = tempfile::NamedTempFile::new_in(&dir).map_err(write_error(&dir))?;
        file.write_all(&text)
            .and_then(|()| file.as_file().sync_all())
            .map_err(write_error(&target))?;
        file.persist(&target)
            .map_err(|e| write_error(&target)(e.error))?;
        sync_dir(&dir);
        Ok(())
    }

    /// An empty configuration for `path`.
    fn empty(path: &Path) -> Self {
        DockerConfig {
            path: path.to_owned(),
            json: Map::new(),
            helper_dirs: None,
        }
    }

    /// Checks the types of the fields this module reads and writes, so that
    /// the accessors can simply skip what does not fit.
    fn check(&self) -> Result<(), CredentialError> {
        let invalid = |field: String, expected| CredentialError::InvalidField {
            path: self.path.clone(),
            field,
            expected,
        };
        match self.json.get("auths") {
            None | Some(Value::Null) => {}
            Some(Value::Object(auths)) => {
                for (key, entry) in auths {
                    if !matches!(entry, Value::Object(_) | Value::Null) {
                        return Err(invalid(format!("auths[{key:?}]"), "a JSON object"));
                    }
                }
            }
            Some(_) => return Err(invalid("auths".to_owned(), "a JSON object")),
        }
        match self.json.get("credsStore") {
            None | Some(Value::Null | Value::String(_)) => {}
            Some(_) => return Err(invalid("credsStore".to_owned(), "a string")),
        }
        match self.json.get("credHelpers") {
            None | Some(Value::Null) => {}
            Some(Value::Object(helpers)) => {
                for (key, helper) in helpers {
                    if !matches!(helper, Value::String(_) | Value::Null) {
                        return Err(invalid(format!("credHelpers[{key:?}]"), "a string"));
                    }
                }
            }
            Some(_) => return Err(invalid("credHelpers".to_owned(), "a JSON object")),
        }
        Ok(())
    }

    /// The `auths` object, if any.
    fn auths(&self) -> Option<&Map<String, Value>> {
        self.json.get("auths").and_then(Value::as_object)
    }

    /// Sets `auths[key]`, creating `auths` if missing (or `null`).
    fn insert_auth(&mut self, key: String, entry: Value) {
        if let Some(Value::Object(auths)) = self.json.get_mut("auths") {
            auths.insert(key, entry);
        } else {
            let mut auths = Map::new();
            auths.insert(key, entry);
            self.json.insert("auths".to_owned(), Value::Object(auths));
        }
    }

    /// The `credsStore` helper name, if set and not empty.
    fn creds_store(&self) -> Option<&str> {
        self.json
            .get("credsStore")
            .and_then(Value::as_str)
            .filter(|name| !name.is_empty())
    }

    /// The `credHelpers` object, if any.
    fn cred_helpers(&self) -> Option<&Map<String, Value>> {
        self.json.get("credHelpers").and_then(Value::as_object)
    }

    /// The helper for `registry`: its `credHelpers` entry, else `credsStore`.
    fn helper_for(&self, registry: &Registry<'_>) -> Option<Helper> {
        let per_registry = self.cred_helpers().and_then(|helpers| {
            helpers
                .iter()
                .filter(|(key, _)| hostname(key) == registry.host)
                .find_map(|(key, name)| {
                    let name = name.as_str().filter(|name| !name.is_empty())?;
                    Some(Helper {
                        name: name.to_owned(),
                        configured_as: format!("credHelpers[{key:?}]"),
                    })
                })
        });
        per_registry.or_else(|| {
            self.creds_store().map(|name| Helper {
                name: name.to_owned(),
                configured_as: "credsStore".to_owned(),
            })
        })
    }

    /// The `auths` entry for `registry`: the one under docker's own key if
    /// present, else the first whose key has the same host and port.
    fn auth_entry(&self, registry: &Registry<'_>) -> Option<(&String, &Map<String, Value>)> {
        let auths = self.auths()?;
        let file_key = registry.file_key();
        let exact = auths.get_key_value(&file_key);
        exact
            .into_iter()
            .chain(
                auths
                    .iter()
                    .filter(|(key, _)| hostname(key) == registry.host),
            )
            .find_map(|(key, entry)| Some((key, entry.as_object()?)))
    }

    /// The credentials of the `auths` entry for `registry`.
    fn file_credentials(&self, registry: &Registry<'_>) -> Result<RegistryAuth, CredentialError> {
        let Some((key, entry)) = self.auth_entry(registry) else {
            return Ok(RegistryAuth::Anonymous);
        };
        let invalid = |problem: String| CredentialError::InvalidAuth {
            path: self.path.clone(),
            key: key.clone(),
            problem,
        };
        let field = |name: &str| -> Result<Option<&str>, CredentialError> {
            match entry.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(value)) if value.is_empty() => Ok(None),
                Some(Value::String(value)) => Ok(Some(value)),
                Some(_) => Err(invalid(format!("has a `{name}` that is not a string"))),
            }
        };

        if let Some(token) = field("registrytoken")? {
            return Ok(RegistryAuth::Bearer(token.to_owned()));
        }
        if field("identitytoken")?.is_some() {
            return Err(CredentialError::IdentityTokenUnsupported {
                registry: registry.given.to_owned(),
            });
        }
        if let Some(auth) = field("auth")? {
            let decoded = BASE64_LENIENT
                .decode(auth.trim())
                .map_err(|_| invalid("has an `auth` that is not valid base64".to_owned()))?;
            let decoded = String::from_utf8(decoded)
                .map_err(|_| invalid("has an `auth` that does not decode to UTF-8".to_owned()))?;
            return match decoded.split_once(':') {
                Some((username, password)) if !username.is_empty() => Ok(RegistryAuth::Basic(
                    username.to_owned(),
                    password.trim_matches('\0').to_owned(),
                )),
                _ => Err(invalid(
                    "has an `auth` that does not decode to `username:password`".to_owned(),
                )),
            };
        }
        let username = field("username")?;
        let password = field("password")?;
        if username.is_none() && password.is_none() {
            // docker's marker for credentials kept by `credsStore`.
            return Ok(RegistryAuth::Anonymous);
        }
        Ok(RegistryAuth::Basic(
            username.unwrap_or_default().to_owned(),
            password.unwrap_or_default().to_owned(),
        ))
    }

    /// Removes the `auths` entries for `registry` (with `WithCredentials`,
    /// only those holding a secret); returns whether any was.
    fn remove_auth_entries(&mut self, registry: &Registry<'_>, which: Removal) -> bool {
        let Some(Value::Object(auths)) = self.json.get_mut("auths") else {
            return false;
        };
        let before = auths.len();
        auths.retain(|key, entry| {
            if hostname(key) != registry.host {
                return true;
            }
            match which {
                Removal::All => false,
                Removal::WithCredentials => !holds_secret(entry),
            }
        });
        auths.len() != before
    }

    /// Asks `helper` for the credentials of `registry`; `None` if it has
    /// none.
    fn helper_get(
        &self,
        helper: &Helper,
        registry: &Registry<'_>,
    ) -> Result<Option<RegistryAuth>, CredentialError> {
        let output = self.run_helper(helper, "get", registry.server_url().as_bytes())?;
        if !output.status.success() {
            if is_not_found(&output) {
                return Ok(None);
            }
            return Err(helper_failed(helper, "get", &output));
        }
        let answer: HelperAnswer = serde_json::from_slice(&output.stdout).map_err(|error| {
            CredentialError::HelperOutput {
                program: helper.program(),
                line: error.line(),
                column: error.column(),
            }
        })?;
        let username = answer.username.unwrap_or_default();
        let secret = answer.secret.unwrap_or_default();
        if username == IDENTITY_TOKEN_USERNAME {
            return Err(CredentialError::IdentityTokenUnsupported {
                registry: registry.given.to_owned(),
            });
        }
        if username.is_empty() && secret.is_empty() {
            return Ok(None);
        }
        Ok(Some(RegistryAuth::Basic(username, secret)))
    }

    /// Runs `helper action` with `input` on its standard input.
    fn run_helper(
        &self,
        helper: &Helper,
        action: &'static str,
        input: &[u8],
    ) -> Result<Output, CredentialError> {
        let program = self.find_helper(helper)?;
        let run_error = |source| CredentialError::HelperRun {
            program: program.clone(),
            source,
        };
        let mut child = spawn(
            Command::new(&program)
                .arg(action)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
        )
        .map_err(run_error)?;
        if let Some(mut stdin) = child.stdin.take() {
            match stdin.write_all(input) {
                // A helper may exit without reading its input.
                Ok(()) => {}
                Err(error) if error.kind() == io::ErrorKind::BrokenPipe => {}
                Err(error) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(run_error(error));
                }
            }
            // Dropping `stdin` closes it: the helper reads to its end.
        }
        child.wait_with_output().map_err(run_error)
    }

    /// The path of `helper`'s program, on `PATH` or in the helper directory.
    fn find_helper(&self, helper: &Helper) -> Result<PathBuf, CredentialError> {
        if helper.name.contains(['/', '\\']) {
            return Err(CredentialError::InvalidHelperName {
                name: helper.name.clone(),
                configured_as: helper.configured_as.clone(),
                path: self.path.clone(),
            });
        }
        let program = helper.program();
        let dirs: Vec<PathBuf> = match &self.helper_dirs {
            Some(dirs) => dirs.clone(),
            None => std::env::var_os("PATH")
                .map(|path| std::env::split_paths(&path).collect())
                .unwrap_or_default(),
        };
        dirs.iter()
            .filter(|dir| !dir.as_os_str().is_empty())
            .flat_map(|dir| program_candidates(dir, &program))
            .find(|candidate| is_executable(candidate))
            .ok_or_else(|| CredentialError::HelperNotFound {
                program,
                configured_as: helper.configured_as.clone(),
                path: self.path.clone(),
            })
    }
}

/// Which `auths` entries [`DockerConfig::remove_auth_entries`] removes.
#[derive(Clone, Copy)]
enum Removal {
    /// Every entry for the registry.
    All,
    /// Those holding a secret, not docker's empty `{}` markers.
    WithCredentials,
}

/// Whether an `auths` entry holds a secret.
fn holds_secret(entry: &Value) -> bool {
    ["auth", "password", "identitytoken", "registrytoken"]
        .iter()
        .any(|field| {
            entry
                .get(field)
                .and_then(Value::as_str)
                .is_some_and(|v| !v.is_empty())
        })
}

/// A configured credential helper.
struct Helper {
    /// Its name, `desktop` for `docker-credential-desktop`.
    name: String,
    /// Where it is configured, for errors: `credsStore`, `credHelpers["…"]`.
    configured_as: String,
}

impl Helper {
    /// Its program name, `docker-credential-<name>`.
    fn program(&self) -> String {
        format!("{HELPER_PREFIX}{}", self.name)
    }
}

/// A helper's answer to `get`. Holds a secret, hence the manual `Debug`.
#[derive(Deserialize)]
struct HelperAnswer {
    /// The username; `<token>` for an identity token.
    #[serde(rename = "Username", default)]
    username: Option<String>,
    /// The password or token.
    #[serde(rename = "Secret", default)]
    secret: Option<String>,
}

impl fmt::Debug for HelperAnswer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HelperAnswer")
            .field("username", &self.username)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// A registry as asked for, and its normalised host.
struct Registry<'a> {
    /// As given by the caller.
    given: &'a str,
    /// Its lower-case `host[:port]`, with Docker Hub's aliases merged.
    host: String,
}

impl<'a> Registry<'a> {
    /// Checks and normalises `registry`.
    fn parse(registry: &'a str) -> Result<Self, CredentialError> {
        let host = hostname(registry);
        if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(CredentialError::InvalidRegistry {
                registry: registry.to_owned(),
            });
        }
        Ok(Registry {
            given: registry,
            host,
        })
    }

    /// Whether this is Docker Hub.
    fn is_docker_hub(&self) -> bool {
        self.host == DOCKER_HUB_HOST
    }

    /// The key docker writes in `auths`.
    fn file_key(&self) -> String {
        if self.is_docker_hub() {
            DOCKER_HUB_KEY.to_owned()
        } else {
            self.host.clone()
        }
    }

    /// The server URL given to helpers: the registry as given, except
    /// Docker Hub, which docker always names `https://index.docker.io/v1/`.
    fn server_url(&self) -> &str {
        if self.is_docker_hub() {
            DOCKER_HUB_KEY
        } else {
            self.given
        }
    }
}

/// The `host[:port]` of a registry or `auths` key, as docker's
/// `ConvertToHostname` (no scheme, nothing from the first `/`), in lower
/// case, with Docker Hub's aliases as `index.docker.io`.
fn hostname(key: &str) -> String {
    let key = key.trim();
    let rest = strip_prefix_ignore_case(key, "https://")
        .or_else(|| strip_prefix_ignore_case(key, "http://"))
        .unwrap_or(key);
    let host = rest.split_once('/').map_or(rest, |(host, _)| host);
    let host = host.to_ascii_lowercase();
    match host.as_str() {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB_HOST.to_owned(),
        _ => host,
    }
}

/// `text` without `prefix`, compared ignoring ASCII case.
fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    if head.eq_ignore_ascii_case(prefix) {
        text.get(prefix.len()..)
    } else {
        None
    }
}

/// Whether a failed helper said that it has no credentials.
fn is_not_found(output: &Output) -> bool {
    [&output.stdout, &output.stderr].iter().any(|stream| {
        String::from_utf8_lossy(stream)
            .to_ascii_lowercase()
            .contains(NOT_FOUND_MESSAGE)
    })
}

/// The error for a helper that exited with a failure.
fn helper_failed(helper: &Helper, action: &'static str, output: &Output) -> CredentialError {
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let text = if stderr.trim().is_empty() {
        stdout.trim()
    } else {
        stderr.trim()
    };
    let mut quoted: String = text.chars().take(MAX_HELPER_OUTPUT).collect();
    if quoted.len() < text.len() {
        quoted.push('…');
    }
    if quoted.is_empty() {
        quoted.push_str("no output");
    }
    CredentialError::HelperFailed {
        program: helper.program(),
        action,
        status: output.status.to_string(),
        output: quoted,
    }
}

/// The files that may be `program` in `dir`.
fn program_candidates(dir: &Path, program: &str) -> Vec<PathBuf> {
    let mut candidates = Vec::new();
    if cfg!(windows) {
        for extension in ["exe", "cmd", "bat"] {
            candidates.push(dir.join(format!("{program}.{extension}")));
        }
    }
    candidates.push(dir.join(program));
    candidates
}

/// Whether `path` is a file that can be executed.
fn is_executable(path: &Path) -> bool {
    let Ok(metadata) = fs::metadata(path) else {
        return false;
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        metadata.is_file() && metadata.permissions().mode() & 0o111 != 0
    }
    #[cfg(not(unix))]
    {
        metadata.is_file()
    }
}

/// Spawns `command`, retrying briefly on `ETXTBSY`: a program that was just
/// written can be busy while another thread's child still holds it open
/// between `fork` and `exec`.
fn spawn(command: &mut Command) -> io::Result<std::process::Child> {
    let mut attempt = 0;
    loop {
        match command.spawn() {
            Err(error) if error.kind() == io::ErrorKind::ExecutableFileBusy && attempt < 20 => {
                attempt += 1;
                std::thread::sleep(Duration::from_millis(5 * attempt));
            }
            result => return result,
        }
    }
}

/// The file a symbolic link at `path` points to, so that saving replaces the
/// target and keeps the link; `path` itself otherwise.
fn resolve_symlink(path: &Path) -> PathBuf {
    match fs::symlink_metadata(path) {
        Ok(metadata) if metadata.file_type().is_symlink() => {
            fs::canonicalize(path).unwrap_or_else(|_| path.to_owned())
        }
        _ => path.to_owned(),
    }
}

/// Creates `dir` and its parents, private to the user on Unix.
fn create_dir(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt as _;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// Makes a rename in `dir` durable, where the platform allows; best effort.
fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(dir) = fs::File::open(dir) {
        let _ = dir.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(text: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(text)
    }

    /// A config file with `json` in a new temporary directory.
    fn write_config(json: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        fs::write(&path, json).unwrap();
        (dir, path)
    }

    /// A config file with `json`, loaded to run the helpers in `helpers`.
    fn with_helpers(json: &str, helpers: &Path) -> (tempfile::TempDir, DockerConfig) {
        let (dir, path) = write_config(json);
        let config = DockerConfig::load(&path).unwrap().with_helper_dir(helpers);
        (dir, config)
    }

    fn basic(user: &str, password: &str) -> RegistryAuth {
        RegistryAuth::Basic(user.to_owned(), password.to_owned())
    }

    /// Writes an executable `docker-credential-<name>` shell script in `dir`.
    #[cfg(unix)]
    fn helper(dir: &Path, name: &str, body: &str) {
        use std::os::unix::fs::PermissionsExt as _;
        let path = dir.join(format!("docker-credential-{name}"));
        fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn missing_file_is_an_empty_config() {
        let dir = tempfile::tempdir().unwrap();
        let config = DockerConfig::load(&dir.path().join("nope/config.json")).unwrap();
        assert_eq!(
            config.credentials_for("ghcr.io").unwrap(),
            RegistryAuth::Anonymous
        );
        let (_dir, path) = write_config("  \n");
        let config = DockerConfig::load(&path).unwrap();
        assert_eq!(
            config.credentials_for("ghcr.io").unwrap(),
            RegistryAuth::Anonymous
        );
    }

    #[test]
    fn auth_splits_at_the_first_colon() {
        let json = format!(
            r#"{{"auths": {{"ghcr.io": {{"auth": "{}"}}}}}}"#,
            b64("me:pa:ss:")
        );
        let (_dir, path) = write_config(&json);
        let config = DockerConfig::load(&path).unwrap();
        assert_eq!(
            config.credentials_for("ghcr.io").unwrap(),
            basic("me", "pa:ss:")
        );
        assert_eq!(
            config.credentials_for("quay.io").unwrap(),
            RegistryAuth::Anonymous
        );
    }

    #[test]
    fn auth_without_padding_is_accepted() {
        let encoded = b64("u:p1");
        let json = format!(
            r#"{{"auths": {{"ghcr.io": {{"auth": "{}"}}}}}}"#,
            encoded.trim_end_matches('=')
        );
        let (_dir, path) = write_config(&json);
        let config = DockerConfig::load(&path).unwrap();
        assert_eq!(config.credentials_for("ghcr.io").unwrap(), basic("u", "p1"));
    }

    #[test]
    fn keys_match_on_host_and_port() {
        let json = format!(
            r#"{{"auths": {{
                "https://registry.example.com/": {{"auth": "{}"}},
                "http://127.0.0.1:5000/v2/": {{"auth": "{}"}},
                "HTTPS://Quay.IO/v1/": {{"auth": "{}"}}
            }}}}"#,
            b64("a:1"),
            b64("b:2"),
            b64("c:3")
        );
        let (_dir, path) = write_config(&json);
        let config = DockerConfig::load(&path).unwrap();
        assert_eq!(
            config.credentials_for("registry.example.com").unwrap(),
            basic("a", "1")
        );
        assert_eq!(
            config.credentials_for("127.0.0.1:5000").unwrap(),
            basic("b", "2")
        );
        assert_eq!(config.credentials_for("quay.io").unwrap(), basic("c", "3"));
        // The port is part of the host.
        assert_eq!(
            config.credentials_for("127.0.0.1").unwrap(),
            RegistryAuth::Anonymous
        );
        assert_eq!(
            config.credentials_for("registry.example.com:5000").unwrap(),
            RegistryAuth::Anonymous
        );
    }

    #[test]
    fn docker_hub_aliases() {
        for key in [
            "https://index.docker.io/v1/",
            "docker.io",
            "registry-1.docker.io",
        ] {
            let json = format!(
                r#"{{"auths": {{"{key}": {{"auth": "{}"}}}}}}"#,
                b64("hub:pw")
            );
            let (_dir, path) = write_config(&json);
            let config = DockerConfig::load(&path).unwrap();
            for registry in ["docker.io", "index.docker.io", "registry-1.docker.io"] {
                assert_eq!(
                    config.credentials_for(registry).unwrap(),
                    basic("hub", "pw"),
                    "{registry} with key {key}"
                );
            }
        }
    }

    #[test]
    fn username_and_password_fields() {
        let (_dir, path) =
            write_config(r#"{"auths": {"ghcr.io": {"username": "octo", "password": "p:w"}}}"#);
        let config = DockerConfig::load(&path).unwrap();
        assert_eq!(
            config.credentials_for("ghcr.io").unwrap(),
            basic("octo", "p:w")
        );
    }

    #[test]
    fn empty_entry_is_anonymous() {
        let (_dir, path) = write_config(r#"{"auths": {"ghcr.io": {}}}"#);
        let config = DockerConfig::load(&path).unwrap();
        assert_eq!(
            config.credentials_for("ghcr.io").unwrap(),
            RegistryAuth::Anonymous
        );
    }

    #[test]
    fn registrytoken_is_a_bearer_token() {
        let (_dir, path) = write_config(r#"{"auths": {"ghcr.io": {"registrytoken": "tok"}}}"#);
        let config = DockerConfig::load(&path).unwrap();
        assert_eq!(
            config.credentials_for("ghcr.io").unwrap(),
            RegistryAuth::Bearer("tok".to_owned())
        );
    }

    #[test]
    fn identitytoken_is_refused() {
        let json = format!(
            r#"{{"auths": {{"ghcr.io": {{"auth": "{}", "identitytoken": "refresh-me"}}}}}}"#,
            b64("u:p")
        );
        let (_dir, path) = write_config(&json);
        let config = DockerConfig::load(&path).unwrap();
        let error = config.credentials_for("ghcr.io").unwrap_err();
        assert!(
            matches!(&error, CredentialError::IdentityTokenUnsupported { registry } if registry == "ghcr.io"),
            "{error:?}"
        );
        let message = error.to_string();
        assert!(message.contains("ghcr.io"), "{message}");
        assert!(message.contains("username and a password"), "{message}");
        assert!(!message.contains("refresh-me"), "{message}");
    }

    #[test]
    fn bad_auth_names_the_file_and_key() {
        for (auth, problem) in [
            ("%%%not-base64", "not valid base64"),
            (b64("no-colon").as_str(), "username:password"),
            (b64(":nouser").as_str(), "username:password"),
        ] {
            let json = format!(r#"{{"auths": {{"https://ghcr.io/": {{"auth": "{auth}"}}}}}}"#);
            let (_dir, path) = write_config(&json);
            let config = DockerConfig::load(&path).unwrap();
            let error = config.credentials_for("ghcr.io").unwrap_err();
            assert!(
                matches!(error, CredentialError::InvalidAuth { .. }),
                "{error:?}"
            );
            let message = error.to_string();
            assert!(message.contains(&path.display().to_string()), "{message}");
            assert!(message.contains("\"https://ghcr.io/\""), "{message}");
            assert!(message.contains(problem), "{message}");
            assert!(!message.contains(auth), "{message}");
        }
    }

    #[test]
    fn wrong_types_are_errors() {
        for (json, field) in [
            (r#"{"auths": []}"#, "`auths`"),
            (r#"{"auths": {"ghcr.io": "x"}}"#, "auths[\"ghcr.io\"]"),
            (r#"{"credsStore": 1}"#, "`credsStore`"),
            (
                r#"{"credHelpers": {"ghcr.io": true}}"#,
                "credHelpers[\"ghcr.io\"]",
            ),
            ("[]", "(top level)"),
        ] {
            let (_dir, path) = write_config(json);
            let message = DockerConfig::load(&path).unwrap_err().to_string();
            assert!(message.contains(field), "{message}");
            assert!(message.contains(&path.display().to_string()), "{message}");
        }
    }

    #[test]
    fn invalid_json_names_the_file_and_line() {
        let (_dir, path) =
            write_config("{\n  \"auths\": {\n    \"ghcr.io\": {\"auth\": \"c2VjcmV0\"},,\n  }\n}");
        let error = DockerConfig::load(&path).unwrap_err();
        let CredentialError::Json { line, column, .. } = &error else {
            panic!("{error:?}");
        };
        assert_eq!((*line, *column), (3, 37));
        let message = error.to_string();
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(message.contains("line 3 column 37"), "{message}");
        assert!(!message.contains("c2VjcmV0"), "{message}");
    }

    #[test]
    fn invalid_registry() {
        let config = DockerConfig::empty(Path::new("/nonexistent/config.json"));
        for registry in ["", "https://", "ghcr io"] {
            assert!(matches!(
                config.credentials_for(registry),
                Err(CredentialError::InvalidRegistry { .. })
            ));
        }
    }

    #[test]
    fn secrets_are_never_formatted() {
        let json = format!(
            r#"{{"auths": {{"ghcr.io": {{"auth": "{}"}}, "quay.io": {{"password": "hunter2-quay", "username": "q"}}}}, "credHelpers": {{"gcr.io": "gcloud"}}}}"#,
            b64("octo:hunter2-ghcr")
        );
        let (_dir, path) = write_config(&json);
        let config = DockerConfig::load(&path).unwrap();
        let auth = config.credentials_for("ghcr.io").unwrap();
        let formatted = format!(
            "{config:?} {config:#?} {auth:?} {:?}",
            config.credentials_for("quay.io").unwrap()
        );
        for secret in ["hunter2", &b64("octo:hunter2-ghcr")] {
            assert!(!formatted.contains(secret), "{formatted}");
        }
        assert!(formatted.contains("ghcr.io"), "{formatted}");
        assert!(formatted.contains("gcloud"), "{formatted}");

        let answer = HelperAnswer {
            username: Some("u".to_owned()),
            secret: Some("hunter2-helper".to_owned()),
        };
        assert!(!format!("{answer:?}").contains("hunter2"));
    }

    #[test]
    fn store_into_the_file_preserves_fields_and_replaces_spellings() {
        let json = format!(
            r#"{{
                "auths": {{
                    "https://registry.example.com/": {{"auth": "{}", "email": "old@example.com"}},
                    "http://registry.example.com/v1/": {{"identitytoken": "stale"}},
                    "quay.io": {{"auth": "{}"}}
                }},
                "currentContext": "remote",
                "proxies": {{"default": {{"httpProxy": "http://proxy:3128"}}}},
                "otherTool": [1, 2, {{"nested": true}}]
            }}"#,
            b64("old:old"),
            b64("q:q")
        );
        let (_dir, path) = write_config(&json);
        let mut config = DockerConfig::load(&path).unwrap();
        let stored = config
            .store("registry.example.com", "new", "n:e:w")
            .unwrap();
        assert_eq!(stored, StoredIn::File(path.clone()));
        assert_eq!(stored.to_string(), path.display().to_string());

        let saved: Value = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
        let expected = serde_json::json!({
            "auths": {
                "registry.example.com": {"auth": b64("new:n:e:w")},
                "quay.io": {"auth": b64("q:q")},
            },
            "currentContext": "remote",
            "proxies": {"default": {"httpProxy": "http://proxy:3128"}},
            "otherTool": [1, 2, {"nested": true}],
        });
        assert_eq!(saved, expected);
        let reloaded = DockerConfig::load(&path).unwrap();
        assert_eq!(
            reloaded.credentials_for("registry.example.com").unwrap(),
            basic("new", "n:e:w")
        );
        assert_eq!(
            reloaded.credentials_for("quay.io").unwrap(),
            basic("q", "q")
        );
    }

    #[test]
    fn store_docker_hub_under_dockers_key_and_tab_indent() {
        let (_dir, path) = write_config(r#"{"auths": {"docker.io": {"auth": "eDp5"}}}"#);
        let mut config = DockerConfig::load(&path).unwrap();
        config.store("registry-1.docker.io", "hub", "pw").unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.contains("\n\t\"auths\""), "{text}");
        let saved: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            saved,
            serde_json::json!({"auths": {"https://index.docker.io/v1/": {"auth": b64("hub:pw")}}})
        );
    }

    #[test]
    fn store_rejects_usernames_with_a_colon() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        let mut config = DockerConfig::load(&path).unwrap();
        for username in ["", "a:b"] {
            assert!(matches!(
                config.store("ghcr.io", username, "pw"),
                Err(CredentialError::InvalidUsername { .. })
            ));
        }
        assert!(!path.exists());
    }

    #[test]
    fn erase_removes_every_spelling() {
        let json = format!(
            r#"{{"auths": {{"ghcr.io": {{"auth": "{a}"}}, "https://ghcr.io/": {{"auth": "{a}"}}, "quay.io": {{"auth": "{a}"}}}}, "psFormat": "x"}}"#,
            a = b64("u:p")
        );
        let (_dir, path) = write_config(&json);
        let mut config = DockerConfig::load(&path).unwrap();
        assert!(config.erase("ghcr.io").unwrap());
        assert!(!config.erase("ghcr.io").unwrap());
        assert_eq!(
            config.credentials_for("ghcr.io").unwrap(),
            RegistryAuth::Anonymous
        );

        let saved: Value = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(
            saved,
            serde_json::json!({"auths": {"quay.io": {"auth": b64("u:p")}}, "psFormat": "x"})
        );
    }

    #[test]
    fn erase_of_nothing_does_not_create_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        let mut config = DockerConfig::load(&path).unwrap();
        assert!(!config.erase("ghcr.io").unwrap());
        assert!(!path.exists());
    }

    #[cfg(unix)]
    #[test]
    fn saved_file_is_private_and_directory_created() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new/.docker/config.json");
        let mut config = DockerConfig::load(&path).unwrap();
        config.store("ghcr.io", "u", "p").unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let dir_mode = fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(dir_mode & 0o777, 0o700);

        // An existing world-readable file becomes private too.
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        config.store("ghcr.io", "u", "p2").unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // No temporary file is left behind.
        let entries = fs::read_dir(path.parent().unwrap()).unwrap().count();
        assert_eq!(entries, 1);
    }

    #[cfg(unix)]
    #[test]
    fn save_through_a_symlink_keeps_the_link() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.json");
        fs::write(&real, "{}").unwrap();
        let link = dir.path().join("config.json");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let mut config = DockerConfig::load(&link).unwrap();
        config.store("ghcr.io", "u", "p").unwrap();
        assert!(
            fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert!(fs::read_to_string(&real).unwrap().contains("ghcr.io"));
    }

    #[cfg(unix)]
    #[test]
    fn cred_helpers_come_before_auths() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        helper(
            dir.path(),
            "test",
            &format!(
                r#"[ "$1" = get ] || exit 3
cat > '{}'
echo '{{"ServerURL":"ghcr.io","Username":"helper-user","Secret":"helper:secret"}}'"#,
                log.display()
            ),
        );
        let json = format!(
            r#"{{"auths": {{"ghcr.io": {{"auth": "{}"}}}}, "credHelpers": {{"ghcr.io": "test"}}, "credsStore": "absent"}}"#,
            b64("file:user")
        );
        let (_cfg, config) = with_helpers(&json, dir.path());
        assert_eq!(
            config.credentials_for("ghcr.io").unwrap(),
            basic("helper-user", "helper:secret")
        );
        assert_eq!(fs::read_to_string(&log).unwrap(), "ghcr.io");
    }

    #[cfg(unix)]
    #[test]
    fn creds_store_not_found_falls_through_to_auths() {
        let dir = tempfile::tempdir().unwrap();
        helper(
            dir.path(),
            "empty",
            "cat >/dev/null\necho 'credentials not found in native keychain'\nexit 1",
        );
        let json = format!(
            r#"{{"auths": {{"https://ghcr.io/": {{"auth": "{}"}}}}, "credsStore": "empty"}}"#,
            b64("file:user")
        );
        let (_cfg, config) = with_helpers(&json, dir.path());
        assert_eq!(
            config.credentials_for("ghcr.io").unwrap(),
            basic("file", "user")
        );
        assert_eq!(
            config.credentials_for("quay.io").unwrap(),
            RegistryAuth::Anonymous
        );
    }

    #[cfg(unix)]
    #[test]
    fn docker_hub_is_asked_by_dockers_server_url() {
        let dir = tempfile::tempdir().unwrap();
        helper(
            dir.path(),
            "hub",
            r#"url=$(cat)
[ "$url" = "https://index.docker.io/v1/" ] || { echo "credentials not found"; exit 1; }
echo '{"Username":"hub","Secret":"pw"}'"#,
        );
        let (_cfg, config) = with_helpers(r#"{"credsStore": "hub"}"#, dir.path());
        assert_eq!(
            config.credentials_for("docker.io").unwrap(),
            basic("hub", "pw")
        );
        assert_eq!(
            config.credentials_for("ghcr.io").unwrap(),
            RegistryAuth::Anonymous
        );
    }

    #[cfg(unix)]
    #[test]
    fn helper_identity_token_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        helper(
            dir.path(),
            "sso",
            r#"echo '{"ServerURL":"ghcr.io","Username":"<token>","Secret":"refresh-me"}'"#,
        );
        let (_cfg, config) =
            with_helpers(r#"{"credHelpers": {"https://ghcr.io": "sso"}}"#, dir.path());
        let error = config.credentials_for("ghcr.io").unwrap_err();
        assert!(
            matches!(error, CredentialError::IdentityTokenUnsupported { .. }),
            "{error:?}"
        );
        assert!(!error.to_string().contains("refresh-me"));
    }

    #[cfg(unix)]
    #[test]
    fn helper_failure_names_the_helper_and_quotes_stderr() {
        let dir = tempfile::tempdir().unwrap();
        helper(
            dir.path(),
            "broken",
            "echo '  keychain is locked  ' >&2\nexit 7",
        );
        helper(dir.path(), "garbage", "echo 'not json'");
        let (_cfg, config) = with_helpers(
            r#"{"credsStore": "broken", "credHelpers": {"quay.io": "garbage"}}"#,
            dir.path(),
        );

        let error = config.credentials_for("ghcr.io").unwrap_err();
        assert!(
            matches!(error, CredentialError::HelperFailed { .. }),
            "{error:?}"
        );
        let message = error.to_string();
        assert!(
            message.contains("docker-credential-broken get failed"),
            "{message}"
        );
        assert!(message.contains("exit status: 7"), "{message}");
        assert!(message.ends_with(": keychain is locked"), "{message}");

        let error = config.credentials_for("quay.io").unwrap_err();
        assert!(
            matches!(error, CredentialError::HelperOutput { .. }),
            "{error:?}"
        );
        assert!(
            error.to_string().contains("docker-credential-garbage"),
            "{error}"
        );
    }

    #[test]
    fn missing_helper_names_program_origin_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let (_cfg, config) = with_helpers(
            r#"{"credsStore": "nothere", "credHelpers": {"gcr.io": "gone"}}"#,
            dir.path(),
        );

        let message = config.credentials_for("ghcr.io").unwrap_err().to_string();
        let expected = format!(
            "docker-credential-nothere not found on PATH (configured as credsStore in {})",
            config.path().display()
        );
        assert_eq!(message, expected);

        let message = config.credentials_for("gcr.io").unwrap_err().to_string();
        assert!(
            message.starts_with("docker-credential-gone not found on PATH"),
            "{message}"
        );
        assert!(message.contains("credHelpers[\"gcr.io\"]"), "{message}");
    }

    #[test]
    fn helper_names_with_paths_are_refused() {
        let (_cfg, path) = write_config(r#"{"credsStore": "../../bin/sh"}"#);
        let config = DockerConfig::load(&path).unwrap();
        assert!(matches!(
            config.credentials_for("ghcr.io"),
            Err(CredentialError::InvalidHelperName { .. })
        ));
    }

    #[cfg(unix)]
    #[test]
    fn store_through_a_helper() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        helper(
            dir.path(),
            "test",
            &format!(
                r#"[ "$1" = store ] || exit 3
cat >> '{}'"#,
                log.display()
            ),
        );
        let json = format!(
            r#"{{"credsStore": "test", "auths": {{"https://ghcr.io/": {{"auth": "{}"}}, "quay.io": {{}}}}}}"#,
            b64("old:plaintext")
        );
        let (_cfg, mut config) = with_helpers(&json, dir.path());
        let stored = config.store("ghcr.io", "octo", "pa\"ss:word").unwrap();
        assert_eq!(stored, StoredIn::Helper("test".to_owned()));
        assert_eq!(
            stored.to_string(),
            "credential helper docker-credential-test"
        );

        let sent: Value = serde_json::from_str(&fs::read_to_string(&log).unwrap()).unwrap();
        assert_eq!(
            sent,
            serde_json::json!({"ServerURL": "ghcr.io", "Username": "octo", "Secret": "pa\"ss:word"})
        );
        // The stale plain-text credentials are gone; the file never saw the new ones.
        let saved = fs::read_to_string(config.path()).unwrap();
        assert!(!saved.contains("ghcr.io"), "{saved}");
        assert!(!saved.contains("pa\\\"ss"), "{saved}");
        assert!(saved.contains("quay.io"), "{saved}");
    }

    #[cfg(unix)]
    #[test]
    fn store_failure_through_a_helper() {
        let dir = tempfile::tempdir().unwrap();
        helper(dir.path(), "ro", "echo 'read-only keychain'\nexit 1");
        let (_cfg, mut config) = with_helpers(r#"{"credHelpers": {"ghcr.io": "ro"}}"#, dir.path());
        let message = config.store("ghcr.io", "u", "p").unwrap_err().to_string();
        assert!(
            message.contains("docker-credential-ro store failed"),
            "{message}"
        );
        assert!(message.contains("read-only keychain"), "{message}");
    }

    #[cfg(unix)]
    #[test]
    fn erase_through_a_helper() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        helper(
            dir.path(),
            "test",
            &format!(
                r#"[ "$1" = erase ] || exit 3
url=$(cat)
echo "$url" >> '{}'
[ "$url" = ghcr.io ] || {{ echo 'credentials not found in native keychain' >&2; exit 1; }}"#,
                log.display()
            ),
        );
        let (_cfg, mut config) = with_helpers(
            r#"{"credsStore": "test", "auths": {"ghcr.io": {}}}"#,
            dir.path(),
        );
        assert!(config.erase("ghcr.io").unwrap());
        assert!(!config.erase("quay.io").unwrap());
        assert_eq!(fs::read_to_string(&log).unwrap(), "ghcr.io\nquay.io\n");
        let saved: Value =
            serde_json::from_str(&fs::read_to_string(config.path()).unwrap()).unwrap();
        assert_eq!(
            saved,
            serde_json::json!({"credsStore": "test", "auths": {}})
        );
    }
}
