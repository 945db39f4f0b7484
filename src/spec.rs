//! Request specs as data and outcomes as records (feature `serde`).
//!
//! A [`Request`] deserializes from the shape of the original's request dict:
//!
//! ```json
//! {"method": "POST", "url": "https://api.example.com/rows",
//!  "headers": {"Accept": "application/json"}, "params": {"page": 2},
//!  "json": {"id": 7}, "timeout": 5.0}
//! ```
//!
//! `method` defaults to `GET`; `id` is any JSON value, never sent, kept on the request
//! ([`Request::id`]) and echoed as `"id"` in the outcome's record; `data` is a string (the raw body) or an object (a form); `json`
//! and `data` exclude each other; `auth` is `["user", "password"]`. Unknown keys and wrong types
//! are errors that name the key. [`ThreadResponse`] and [`ThreadException`] serialize to flat
//! JSON records.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use reqwest::Method;
use reqwest::header::HeaderMap;
use serde::de::Error as _;
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{Request, ThreadException, ThreadResponse};

/// A request spec that could not be read; the message names the key at fault.
#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct SpecError {
    /// Where in the spec the problem is (`headers.Accept`, `timeout`, `.` for the whole).
    pub path: String,
    /// What is wrong there.
    pub message: String,
}

impl Request {
    /// Reads a request spec from one JSON document (for example one line of a JSON-lines file).
    ///
    /// ```
    /// use parfetch::Request;
    ///
    /// let request = Request::from_spec_json(
    ///     r#"{"method": "POST", "url": "http://127.0.0.1:8080/rows", "json": {"id": 7}, "timeout": 2.5}"#,
    /// )?;
    /// assert_eq!(request.method(), "POST");
    /// assert_eq!(request.body_bytes().unwrap().as_ref(), br#"{"id":7}"#);
    ///
    /// let error = Request::from_spec_json(r#"{"url": "http://x/", "timeout": "soon"}"#).unwrap_err();
    /// assert!(error.to_string().starts_with("timeout: invalid type"), "{error}");
    /// let error = Request::from_spec_json(r#"{"url": "http://x/", "verify": false}"#).unwrap_err();
    /// assert!(error.to_string().contains("unknown field `verify`"), "{error}");
    /// # Ok::<(), parfetch::SpecError>(())
    /// ```
    ///
    /// # Errors
    /// [`SpecError`] naming the key at fault, for malformed JSON, unknown keys, wrong types and
    /// invalid values.
    #[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
    pub fn from_spec_json(text: &str) -> Result<Self, SpecError> {
        let mut deserializer = serde_json::Deserializer::from_str(text);
        let request: Request =
            serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
                let path = error.path().to_string();
                SpecError {
                    path,
                    message: error.into_inner().to_string(),
                }
            })?;
        deserializer.end().map_err(|error| SpecError {
            path: ".".to_owned(),
            message: error.to_string(),
        })?;
        Ok(request)
    }
}

/// The original's request dict (`requests.request`'s keyword arguments) as JSON, read as
/// given before it becomes a [`Request`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestDict {
    #[serde(default)]
    method: Option<String>,
    url: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    params: BTreeMap<String, Scalar>,
    #[serde(default)]
    json: Option<serde_json::Value>,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default)]
    timeout: Option<f64>,
    #[serde(default)]
    auth: Option<(String, String)>,
    /// Kept as given, `null` included: the caller matches records to rows by it.
    #[serde(default, deserialize_with = "present")]
    id: Option<serde_json::Value>,
}

fn present<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<serde_json::Value>, D::Error> {
    serde_json::Value::deserialize(deserializer).map(Some)
}

/// A query or form value: Python's `requests` takes strings, numbers and booleans alike.
#[derive(Deserialize)]
#[serde(untagged, expecting = "a string, number or boolean")]
enum Scalar {
    Text(String),
    Number(serde_json::Number),
    Flag(bool),
}

impl Scalar {
    fn into_text(self) -> String {
        match self {
            Self::Text(text) => text,
            Self::Number(number) => number.to_string(),
            Self::Flag(flag) => flag.to_string(),
        }
    }
}

#[derive(Deserialize)]
#[serde(untagged, expecting = "a string (the body) or an object (a form)")]
enum Data {
    Raw(String),
    Form(BTreeMap<String, Scalar>),
}

#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
impl<'de> Deserialize<'de> for Request {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let dict = RequestDict::deserialize(deserializer)?;
        let method = match dict.method {
            Some(method) => Method::from_bytes(method.to_ascii_uppercase().as_bytes())
                .map_err(|_| D::Error::custom(format!("invalid HTTP method {method:?}")))?,
            None => Method::GET,
        };
        let mut request = Request::new(method, &dict.url);
        for (name, value) in dict.headers {
            request = request.header(name, value);
        }
        if !dict.params.is_empty() {
            request = request.query(dict.params.into_iter().map(|(k, v)| (k, v.into_text())));
        }
        request = match (dict.json, dict.data) {
            (Some(_), Some(_)) => {
                return Err(D::Error::custom("give either `json` or `data`, not both"));
            }
            (Some(json), None) => request.json(&json),
            (None, Some(Data::Raw(text))) => request.body(text),
            (None, Some(Data::Form(form))) => {
                request.form(form.into_iter().map(|(k, v)| (k, v.into_text())))
            }
            (None, None) => request,
        };
        if let Some(seconds) = dict.timeout {
            let timeout = Duration::try_from_secs_f64(seconds)
                .ok()
                .filter(|timeout| !timeout.is_zero())
                .ok_or_else(|| {
                    D::Error::custom(format!(
                        "timeout must be a positive number of seconds, not {seconds}"
                    ))
                })?;
            request = request.timeout(timeout);
        }
        if let Some((user, password)) = dict.auth {
            request = request.basic_auth(user, Some(password));
        }
        if let Some(id) = dict.id {
            request = request.id(id);
        }
        Ok(request)
    }
}

/// The request part of a record: method, URL as given, and the headers, query and timeout set
/// on it. Bodies and credentials are left out: a URL's password shows as `***`, the values of
/// credential headers (`Authorization`, `Cookie`, `X-Api-Key`, ...) as `<redacted>`.
#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
impl Serialize for Request {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("method", self.method().as_str())?;
        map.serialize_entry("url", &self.url_for_messages())?;
        if !self.headers().is_empty() {
            map.serialize_entry("headers", &header_map(self.headers(), true))?;
        }
        if !self.query_pairs().is_empty() {
            let params: BTreeMap<&str, &str> = self
                .query_pairs()
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            map.serialize_entry("params", &params)?;
        }
        if let Some(timeout) = self.timeout_override() {
            map.serialize_entry("timeout", &timeout.as_secs_f64())?;
        }
        map.end()
    }
}

/// `{"id" (when the request has one), "request", "ok": true, "status", "url", "headers", "body" or "body_base64", "elapsed_ms",
/// "attempts"}`; the body is text when it is UTF-8, base64 otherwise.
#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
impl Serialize for ThreadResponse {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        if let Some(id) = self.request().id_value() {
            map.serialize_entry("id", id)?;
        }
        map.serialize_entry("request", self.request())?;
        map.serialize_entry("ok", &true)?;
        map.serialize_entry("status", &self.status().as_u16())?;
        map.serialize_entry("url", &crate::redact::url(self.url().as_str()))?;
        map.serialize_entry("headers", &header_map(self.headers(), false))?;
        match std::str::from_utf8(self.bytes()) {
            Ok(text) => map.serialize_entry("body", text)?,
            Err(_) => map.serialize_entry(
                "body_base64",
                &base64::engine::general_purpose::STANDARD.encode(self.bytes()),
            )?,
        }
        map.serialize_entry("elapsed_ms", &(self.elapsed().as_secs_f64() * 1e3))?;
        map.serialize_entry("attempts", &self.attempts())?;
        map.end()
    }
}

/// `{"id" (when the request has one), "request", "ok": false, "error": {"kind", "message"},
/// "attempts"}`.
#[cfg_attr(docsrs, doc(cfg(feature = "serde")))]
impl Serialize for ThreadException {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        if let Some(id) = self.request().id_value() {
            map.serialize_entry("id", id)?;
        }
        map.serialize_entry("request", self.request())?;
        map.serialize_entry("ok", &false)?;
        let error = BTreeMap::from([
            ("kind", self.error().kind().to_owned()),
            ("message", self.error().to_string()),
        ]);
        map.serialize_entry("error", &error)?;
        map.serialize_entry("attempts", &self.attempts())?;
        map.end()
    }
}

/// Header names to values; repeated headers joined with ", "; credentials redacted if `redact`
/// (a request's own headers: a response's are the data asked for).
fn header_map(headers: &HeaderMap, redact: bool) -> BTreeMap<&str, String> {
    let mut map: BTreeMap<&str, String> = BTreeMap::new();
    for (name, value) in headers {
        let value = if redact {
            crate::redact::header_value(name, value)
        } else {
            String::from_utf8_lossy(value.as_bytes())
        };
        map.entry(name.as_str())
            .and_modify(|joined| {
                joined.push_str(", ");
                joined.push_str(&value);
            })
            .or_insert_with(|| value.into_owned());
    }
    map
}
