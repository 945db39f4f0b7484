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
    let authority_start = authority_start(url, scheme_end);
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
    value.is_sensitive() || is_secret_name(name.as_str())
}

/// `true` for a header or key name (lower case) that names a credential.
fn is_secret_name(name: &str) -> bool {
    const EXACT: [&str; 4] = [
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
    ];
    const PARTS: [&str; 6] = [
        "api-key", "apikey", "token", "secret", "password", "session",
    ];
    EXACT.contains(&name) || PARTS.iter().any(|part| name.contains(part))
}

/// Free text (an input line that could not be read as a request, JSON or not) with the
/// credentials it may hold redacted, for messages and records: URL passwords become `***`; the
/// values of JSON keys that name credentials (`"Authorization"`, `"Cookie"`, `"X-Api-Key"`,
/// names with `token`, `secret`, `password` or `session`, the spec's `"auth"`) and the tokens
/// after `Bearer ` or `Basic ` become `<redacted>`. A value cut short (an unterminated string)
/// is redacted to the end of the text.
///
/// ```
/// let line = r#"{"url": "http://bob:pw@api.example/", "headers": {"X-Api-Key": "k3y"}, "verify": 0}"#;
/// assert_eq!(
///     parfetch::redact_text(line),
///     r#"{"url": "http://bob:***@api.example/", "headers": {"X-Api-Key": "<redacted>"}, "verify": 0}"#,
/// );
/// ```
pub fn redact_text(text: &str) -> String {
    // As written, then with JSON's escapes undone: a URL parser reads the text one way or the
    // other, depending on whether the line is JSON.
    let text = url_passwords(&unescaped_url_characters(&url_passwords(text)));
    let text = secret_values(&text);
    schemes_tokens(&text)
}

/// `text` with JSON's escapes of the characters that delimit a URL's user info undone (`\/` as
/// PHP's `json_encode` writes slashes, `\u002f`, `\u003a`, `\u0040`), so that a password in an
/// escaped URL is found too. Equal JSON, and a diagnostic either way.
fn unescaped_url_characters(text: &str) -> Cow<'_, str> {
    const ESCAPES: [(&str, &str); 7] = [
        ("\\/", "/"),
        ("\\u002f", "/"),
        ("\\u002F", "/"),
        ("\\u003a", ":"),
        ("\\u003A", ":"),
        ("\\u0040", "@"),
        ("\\u0025", "%"),
    ];
    if !text.contains('\\') {
        return Cow::Borrowed(text);
    }
    let mut text = text.to_owned();
    for (escaped, character) in ESCAPES {
        text = text.replace(escaped, character);
    }
    Cow::Owned(text)
}

/// Where the authority of a URL starts, its scheme ending (`://`) at `scheme_end`: past more
/// slashes, which a URL parser skips (`http:///bob:pw@host/` has a password).
fn authority_start(text: &str, scheme_end: usize) -> usize {
    let after = &text[scheme_end + 3..];
    text.len() - after.trim_start_matches(['/', '\\']).len()
}

fn url_passwords(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(found) = rest.find("://") {
        let authority_start = authority_start(rest, found);
        // Not `,`, brackets or braces: a URL parser takes them into the user info; nor, in a
        // scheme other than the web's, a backslash.
        let ends: &[char] = if is_special_scheme(&rest[..found]) {
            &['/', '?', '#', '"', '\'', ' ', '\t', '<', '>', '\\']
        } else {
            &['/', '?', '#', '"', '\'', ' ', '\t', '<', '>']
        };
        let authority_len = rest[authority_start..]
            .find(ends)
            .unwrap_or(rest.len() - authority_start);
        let mut end = authority_start + authority_len;
        if rest[..end].ends_with(':') && rest[end..].starts_with("//") {
            // A URL right after the scheme (`http://http://bob:pw@host/`) starts with this
            // authority's last `:`: it is left for the next round.
            end -= 1;
        }
        out.push_str(&url(&rest[..end]));
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// Whether the scheme that ends `before` (the text before a `://`) is one whose URLs a parser
/// reads with `\\` as `/`: `http`, `https`, `ws`, `wss`, `ftp`, `file`.
fn is_special_scheme(before: &str) -> bool {
    let scheme_start = before
        .trim_end_matches(|c: char| c.is_ascii_alphanumeric() || "+-.".contains(c))
        .len();
    let scheme = before[scheme_start..].to_ascii_lowercase();
    ["http", "https", "ws", "wss", "ftp", "file"].contains(&scheme.as_str())
}

fn secret_values(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    while let Some(open) = text[at..].find('"').map(|i| at + i) {
        let key_end = string_end(text, open);
        let key = if key_end > open + 1 && text[..key_end].ends_with('"') {
            text[open + 1..key_end - 1].to_ascii_lowercase()
        } else {
            String::new()
        };
        let after = &text[key_end..];
        let colon = after.len() - after.trim_start().len();
        if !after[colon..].starts_with(':') || !(key == "auth" || is_secret_name(&key)) {
            out.push_str(&text[at..key_end]);
            at = key_end;
            continue;
        }
        let value_at = key_end + colon + 1;
        let value_at = value_at + (text[value_at..].len() - text[value_at..].trim_start().len());
        let value_end = value_end(text, value_at);
        out.push_str(&text[at..value_at]);
        if value_end > value_at {
            out.push('"');
            out.push_str(REDACTED);
            out.push('"');
        }
        at = value_end;
    }
    out.push_str(&text[at..]);
    out
}

/// Where the JSON string opening at `open` ends (after its closing quote), or the text's end.
fn string_end(text: &str, open: usize) -> usize {
    let mut escaped = false;
    for (i, c) in text[open + 1..].char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => return open + 1 + i + 1,
            _ => {}
        }
    }
    text.len()
}

/// Where the JSON value starting at `at` ends: a string, an array or object (brackets counted
/// outside strings), or anything else up to the next separator.
fn value_end(text: &str, at: usize) -> usize {
    match text[at..].chars().next() {
        Some('"') => string_end(text, at),
        Some('[' | '{') => {
            let mut depth = 0usize;
            let mut i = at;
            while i < text.len() {
                match text.as_bytes()[i] {
                    b'"' => {
                        i = string_end(text, i);
                        continue;
                    }
                    b'[' | b'{' => depth += 1,
                    b']' | b'}' => {
                        depth -= 1;
                        if depth == 0 {
                            return i + 1;
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
            text.len()
        }
        _ => text[at..]
            .find([',', '}', ']'])
            .map_or(text.len(), |end| at + end),
    }
}

fn schemes_tokens(text: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    while let Some(found) = ["bearer ", "basic "]
        .iter()
        .filter_map(|scheme| lower[at..].find(scheme).map(|i| (at + i, scheme.len())))
        .min()
    {
        let token_at = found.0 + found.1;
        let token_len = text[token_at..]
            .find(|c: char| c.is_whitespace() || "\"',;}]".contains(c))
            .unwrap_or(text.len() - token_at);
        out.push_str(&text[at..token_at]);
        if token_len > 0 && !text[token_at..].starts_with(REDACTED) {
            out.push_str(REDACTED);
        } else {
            out.push_str(&text[token_at..token_at + token_len]);
        }
        at = token_at + token_len;
    }
    out.push_str(&text[at..]);
    out
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
        assert_eq!(url("http:///bob:pw@host/"), "http:///bob:***@host/");
        assert_eq!(url("file:///a/b"), "file:///a/b");
    }

    #[test]
    fn escaped_urls_lose_their_passwords_too() {
        for (line, hidden) in [
            (
                r#"{"url": "http:\/\/bob:pass12@h\/", "timeout": "x"}"#,
                "pass12",
            ),
            (r#"{"url": "http:\u002f\u002fbob:pass34@h/"}"#, "pass34"),
            (r#"{"url": "http://bob\u003apass56\u0040h/"}"#, "pass56"),
            // Not JSON: `\u002f` is text, and part of a non-web URL's user info.
            (r#""x:/:///;tp://bob\u002fbob:pass78@h/", "#, "pass78"),
        ] {
            let redacted = redact_text(line);
            assert!(!redacted.contains(hidden), "{redacted}");
            assert!(redacted.contains("bob:***@h"), "{redacted}");
        }
    }

    #[test]
    fn free_text_loses_its_credentials_and_keeps_the_rest() {
        let cases = [
            (
                r#"{"url": "http://bob:pw1@h/a", "headers": {"X-Api-Key": "k3y", "Accept": "a"}"#,
                r#"{"url": "http://bob:***@h/a", "headers": {"X-Api-Key": "<redacted>", "Accept": "a"}"#,
            ),
            (
                r#"{"auth": ["ada", "pw\"2"], "url": 5, "id": 3}"#,
                r#"{"auth": "<redacted>", "url": 5, "id": 3}"#,
            ),
            (
                r#"{"headers": {"Authorization": "Bearer t0k"#,
                r#"{"headers": {"Authorization": "<redacted>""#,
            ),
            (
                "see http://a:b@h1/ and https://c:d@h2?x",
                "see http://a:***@h1/ and https://c:***@h2?x",
            ),
            (
                "Authorization: Bearer t0k3n more",
                "Authorization: Bearer <redacted> more",
            ),
            (
                "{\"password\": 12345, \"n\": 1}",
                "{\"password\": \"<redacted>\", \"n\": 1}",
            ),
            (
                "http://http://bob:pw@h/ and http://a:b@c://d:e@f/",
                "http://http://bob:***@h/ and http://a:***@c://d:***@f/",
            ),
            ("http://://bob:pw@h/", "http://://bob:***@h/"),
            (
                "http:///bob:pw@h/ http://\\a:b@h",
                "http:///bob:***@h/ http://\\a:***@h",
            ),
            (
                "x://]a:pw@h/ http://a,b:pw@h [http://{c}:pw@h]",
                "x://]a:***@h/ http://a,b:***@h [http://{c}:***@h]",
            ),
            ("plain text, nothing secret", "plain text, nothing secret"),
            ("\"", "\""),
            ("\"token\":", "\"token\":"),
            ("é\"token\" : [\"ü", "é\"token\" : \"<redacted>\""),
            ("\"tökén\": \"ü\"", "\"tökén\": \"ü\""),
        ];
        for (given, shown) in cases {
            assert_eq!(redact_text(given), shown, "{given}");
        }
    }

    #[test]
    fn a_header_value_is_shown_unless_it_is_a_credential() {
        let shown = |name: &'static str, value: HeaderValue| {
            header_value(&HeaderName::from_static(name), &value).into_owned()
        };
        assert_eq!(shown("accept", HeaderValue::from_static("a/b")), "a/b");
        assert_eq!(
            shown("x-batch", HeaderValue::from_bytes(b"caf\xe9").unwrap()),
            "caf\u{fffd}"
        );
        assert_eq!(shown("cookie", HeaderValue::from_static("s=1")), REDACTED);
        let mut marked = HeaderValue::from_static("t0k");
        marked.set_sensitive(true);
        assert_eq!(shown("x-other", marked), REDACTED, "marked sensitive");
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
