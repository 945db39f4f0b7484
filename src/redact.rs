//! Credentials kept out of what parfetch shows: error messages, records, `Debug`.
//!
//! A URL's password becomes `***`; the values of headers that carry credentials become
//! [`REDACTED`]. What is sent is never changed, only what is shown.

use std::borrow::Cow;

use reqwest::header::{HeaderName, HeaderValue};

/// What a redacted header value is shown as.
pub(crate) const REDACTED: &str = "<redacted>";

/// `url` with the password of its user info, if any, replaced by `***`
/// (`http://bob:***@host/`). Works on any text, parsed or not.
pub(crate) fn url(url: &str) -> Cow<'_, str> {
    let Some(scheme_end) = url.find("://") else {
        return Cow::Borrowed(url);
    };
    let authority_start = scheme_end + 3;
    let authority_len = url[authority_start..]
        .find(['/', '?', '#'])
        .unwrap_or(url.len() - authority_start);
    let authority = &url[authority_start..authority_start + authority_len];
    let Some(at) = authority.rfind('@') else {
        return Cow::Borrowed(url);
    };
    let Some(colon) = authority[..at].find(':') else {
        return Cow::Borrowed(url);
    };
    let password_start = authority_start + colon + 1;
    let password_end = authority_start + at;
    Cow::Owned(format!(
        "{}***{}",
        &url[..password_start],
        &url[password_end..]
    ))
}

/// `true` for a header whose value is a credential: `Authorization`, `Proxy-Authorization`,
/// `Cookie`, `Set-Cookie`, and names that say so (`X-Api-Key`, `X-Auth-Token`,
/// `X-Client-Secret`, ...), or a value the client marked sensitive.
pub(crate) fn is_secret(name: &HeaderName, value: &HeaderValue) -> bool {
    const EXACT: [&str; 4] = [
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
    ];
    const PARTS: [&str; 6] = [
        "api-key", "apikey", "token", "secret", "password", "session",
    ];
    let name = name.as_str();
    value.is_sensitive() || EXACT.contains(&name) || PARTS.iter().any(|part| name.contains(part))
}

/// A header's value as shown: itself, or [`REDACTED`].
pub(crate) fn header_value<'a>(name: &HeaderName, value: &'a HeaderValue) -> Cow<'a, str> {
    if is_secret(name, value) {
        Cow::Borrowed(REDACTED)
    } else {
        String::from_utf8_lossy(value.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_urls_password_is_hidden_and_nothing_else_changes() {
        assert_eq!(url("http://bob:pw@host/a"), "http://bob:***@host/a");
        assert_eq!(url("https://bob:p:w@h:8080?q"), "https://bob:***@h:8080?q");
        assert_eq!(url("http://a:b@c@host/"), "http://a:***@host/");
        assert_eq!(url("http://bob@host/"), "http://bob@host/");
        assert_eq!(url("http://host/a@b:c"), "http://host/a@b:c");
        assert_eq!(url("not a url"), "not a url");
        assert_eq!(url("http://bob:@host/"), "http://bob:***@host/");
    }

    #[test]
    fn credential_headers_are_recognised() {
        let secret = |name: &str| {
            is_secret(
                &HeaderName::from_bytes(name.as_bytes()).unwrap(),
                &HeaderValue::from_static("v"),
            )
        };
        for name in [
            "authorization",
            "cookie",
            "x-api-key",
            "x-auth-token",
            "client-secret",
        ] {
            assert!(secret(name), "{name}");
        }
        for name in ["accept", "content-type", "user-agent", "x-batch"] {
            assert!(!secret(name), "{name}");
        }
    }
}
