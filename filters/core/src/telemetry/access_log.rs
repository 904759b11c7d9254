//! Access log entries in Istio's default formats: its JSON keys, or its
//! TEXT line, with Envoy's rendering of each command operator (numbers as
//! numbers, a missing value as `null` in JSON and `-` in text).

use crate::telemetry::flags::short_codes;
use serde_json::{Map, Value};

/// The format of the entries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Format {
    /// Istio's `EnvoyJSONLogFormatIstio` keys, one JSON object per line.
    #[default]
    Json,
    /// Istio's `EnvoyTextLogFormat` line.
    Text,
}

/// What one request's entry says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Entry {
    /// `%START_TIME%`, nanoseconds since the Unix epoch.
    pub start_time_nanos: Option<i64>,
    /// `%REQ(:METHOD)%`.
    pub method: Option<String>,
    /// `%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%`.
    pub path: Option<String>,
    /// `%PROTOCOL%`.
    pub protocol: Option<String>,
    /// `%RESPONSE_CODE%` (0 when nothing was sent).
    pub response_code: Option<i64>,
    /// `%RESPONSE_FLAGS%`, as Envoy's bitmask.
    pub response_flags: u64,
    /// `%RESPONSE_CODE_DETAILS%`.
    pub response_code_details: Option<String>,
    /// `%CONNECTION_TERMINATION_DETAILS%`.
    pub connection_termination_details: Option<String>,
    /// `%UPSTREAM_TRANSPORT_FAILURE_REASON%`.
    pub upstream_transport_failure_reason: Option<String>,
    /// `%BYTES_RECEIVED%`: request body bytes.
    pub bytes_received: Option<i64>,
    /// `%BYTES_SENT%`: response body bytes.
    pub bytes_sent: Option<i64>,
    /// `%DURATION%`, in milliseconds.
    pub duration_ms: Option<i64>,
    /// `%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%`.
    pub upstream_service_time: Option<String>,
    /// `%REQ(X-FORWARDED-FOR)%`.
    pub x_forwarded_for: Option<String>,
    /// `%REQ(USER-AGENT)%`.
    pub user_agent: Option<String>,
    /// `%REQ(X-REQUEST-ID)%`.
    pub request_id: Option<String>,
    /// `%REQ(:AUTHORITY)%`.
    pub authority: Option<String>,
    /// `%UPSTREAM_HOST%`.
    pub upstream_host: Option<String>,
    /// `%UPSTREAM_CLUSTER%`.
    pub upstream_cluster: Option<String>,
    /// `%UPSTREAM_LOCAL_ADDRESS%`.
    pub upstream_local_address: Option<String>,
    /// `%DOWNSTREAM_LOCAL_ADDRESS%`.
    pub downstream_local_address: Option<String>,
    /// `%DOWNSTREAM_REMOTE_ADDRESS%`.
    pub downstream_remote_address: Option<String>,
    /// `%REQUESTED_SERVER_NAME%`.
    pub requested_server_name: Option<String>,
    /// `%ROUTE_NAME%`.
    pub route_name: Option<String>,
    /// Further keys (the tracing custom tags), after Istio's.
    pub extra: Vec<(String, String)>,
}

impl Entry {
    /// The keys and values, as Envoy's JSON formatter renders them.
    fn fields(&self) -> Vec<(&str, Value)> {
        let text = |v: &Option<String>| v.clone().map_or(Value::Null, Value::String);
        let number = |v: Option<i64>| v.map_or(Value::Null, Value::from);
        let mut fields = vec![
            (
                "start_time",
                self.start_time_nanos
                    .map_or(Value::Null, |t| Value::String(rfc3339_millis(t))),
            ),
            ("method", text(&self.method)),
            ("path", text(&self.path)),
            ("protocol", text(&self.protocol)),
            (
                "response_code",
                Value::from(self.response_code.unwrap_or(0)),
            ),
            (
                "response_flags",
                Value::String(short_codes(self.response_flags)),
            ),
            ("response_code_details", text(&self.response_code_details)),
            (
                "connection_termination_details",
                text(&self.connection_termination_details),
            ),
            (
                "upstream_transport_failure_reason",
                text(&self.upstream_transport_failure_reason),
            ),
            (
                "bytes_received",
                Value::from(self.bytes_received.unwrap_or(0)),
            ),
            ("bytes_sent", Value::from(self.bytes_sent.unwrap_or(0))),
            ("duration", number(self.duration_ms)),
            ("upstream_service_time", text(&self.upstream_service_time)),
            ("x_forwarded_for", text(&self.x_forwarded_for)),
            ("user_agent", text(&self.user_agent)),
            ("request_id", text(&self.request_id)),
            ("authority", text(&self.authority)),
            ("upstream_host", text(&self.upstream_host)),
            ("upstream_cluster", text(&self.upstream_cluster)),
            ("upstream_local_address", text(&self.upstream_local_address)),
            (
                "downstream_local_address",
                text(&self.downstream_local_address),
            ),
            (
                "downstream_remote_address",
                text(&self.downstream_remote_address),
            ),
            ("requested_server_name", text(&self.requested_server_name)),
            ("route_name", text(&self.route_name)),
        ];
        fields.extend(
            self.extra
                .iter()
                .map(|(k, v)| (k.as_str(), Value::String(v.clone()))),
        );
        fields
    }

    /// The fields that have a value, as strings: an OTLP record's attributes.
    pub fn attributes(&self) -> Vec<(String, String)> {
        self.fields()
            .into_iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| (k.to_owned(), text_of(&v)))
            .collect()
    }

    /// The entry as one JSON object.
    ///
    /// # Examples
    ///
    /// ```
    /// use meshwasm_core::telemetry::access_log::Entry;
    ///
    /// let entry = Entry { method: Some("GET".into()), response_code: Some(404), ..Entry::default() };
    /// let json: serde_json::Value = serde_json::from_str(&entry.to_json()).unwrap();
    /// assert_eq!(json["method"], "GET");
    /// assert_eq!(json["response_code"], 404);
    /// assert_eq!(json["response_flags"], "-");
    /// assert!(json["upstream_host"].is_null());
    /// ```
    pub fn to_json(&self) -> String {
        let object: Map<String, Value> = self
            .fields()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect();
        Value::Object(object).to_string()
    }

    /// The entry as Istio's text line (without the newline).
    ///
    /// # Examples
    ///
    /// ```
    /// use meshwasm_core::telemetry::access_log::Entry;
    ///
    /// let entry = Entry {
    ///     method: Some("GET".into()),
    ///     path: Some("/ratings/1".into()),
    ///     protocol: Some("HTTP/1.1".into()),
    ///     response_code: Some(200),
    ///     ..Entry::default()
    /// };
    /// assert!(entry.to_text().starts_with("[-] \"GET /ratings/1 HTTP/1.1\" 200 - - - \"-\" 0 0 -"));
    /// ```
    pub fn to_text(&self) -> String {
        let fields = self.fields();
        let get = |key: &str| {
            fields
                .iter()
                .find(|(k, _)| *k == key)
                .map_or_else(|| "-".to_owned(), |(_, v)| text_of(v))
        };
        let mut line = format!(
            "[{}] \"{} {} {}\" {} {} {} {} \"{}\" {} {} {} {} \"{}\" \"{}\" \"{}\" \"{}\" \"{}\" {} {} {} {} {} {}",
            get("start_time"),
            get("method"),
            get("path"),
            get("protocol"),
            get("response_code"),
            get("response_flags"),
            get("response_code_details"),
            get("connection_termination_details"),
            get("upstream_transport_failure_reason"),
            get("bytes_received"),
            get("bytes_sent"),
            get("duration"),
            get("upstream_service_time"),
            get("x_forwarded_for"),
            get("user_agent"),
            get("request_id"),
            get("authority"),
            get("upstream_host"),
            get("upstream_cluster"),
            get("upstream_local_address"),
            get("downstream_local_address"),
            get("downstream_remote_address"),
            get("requested_server_name"),
            get("route_name"),
        );
        for (key, value) in &self.extra {
            line.push_str(&format!(" {key}={value}"));
        }
        line
    }

    /// The entry in `format`.
    pub fn render(&self, format: Format) -> String {
        match format {
            Format::Json => self.to_json(),
            Format::Text => self.to_text(),
        }
    }
}

fn text_of(value: &Value) -> String {
    match value {
        Value::Null => "-".to_owned(),
        Value::String(s) if s.is_empty() => "-".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `2026-12-02T07:13:46.123Z`, Envoy's `%START_TIME%`.
///
/// # Examples
///
/// ```
/// use meshwasm_core::telemetry::access_log::rfc3339_millis;
///
/// assert_eq!(rfc3339_millis(0), "1970-01-01T00:00:00.000Z");
/// assert_eq!(rfc3339_millis(1_796_195_626_123_456_789), "2026-12-02T07:13:46.123Z");
/// ```
pub fn rfc3339_millis(nanos: i64) -> String {
    let millis = nanos.div_euclid(1_000_000);
    let secs = millis.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rest = secs.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60,
        millis.rem_euclid(1000)
    )
}
