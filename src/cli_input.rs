//! The `parfetch` command's input: bytes read as lines, and a line read as a request or as a
//! malformed line. It is the command's, public only so that a fuzz target can reach it: not a
//! stable API, and hidden from the documentation.

use std::borrow::Cow;
use std::io::{self, BufRead};

use crate::{Method, Request, Url, redact_text};

/// The longest text of a malformed line kept in its record, in bytes.
pub const TEXT_CUT: usize = 256;

/// The longest message about a malformed line, in bytes.
const MESSAGE_CUT: usize = 4 * TEXT_CUT;

/// How much of a line over the cap is kept for its record: more than [`TEXT_CUT`], so that a
/// credential that starts before the cut is seen whole by the redaction.
pub const TOO_LONG_HEAD: usize = 4 * TEXT_CUT;

/// One line of input, as read.
#[derive(Debug)]
pub enum InputLine {
    /// A line of UTF-8 text, without its line end.
    Text(String),
    /// A line that is not UTF-8, without its line end.
    NotUtf8(Vec<u8>),
    /// At least `bytes` bytes: over the cap, and only its start (`head`) kept.
    TooLong {
        /// The line's length as far as it was read.
        bytes: usize,
        /// Its first bytes, at most [`TOO_LONG_HEAD`].
        head: Vec<u8>,
    },
}

/// The lines of one input: a UTF-8 byte-order mark at its start is dropped, as are line ends
/// (`\n` or `\r\n`); a line over `max` bytes (neither counted) is skipped as it is read, not
/// held whole.
#[derive(Debug)]
pub struct InputLines<R> {
    reader: R,
    max: usize,
    started: bool,
}

impl<R: BufRead> InputLines<R> {
    /// The lines of `reader`, each at most `max` bytes.
    pub fn new(reader: R, max: usize) -> Self {
        Self {
            reader,
            max,
            started: false,
        }
    }
}

impl<R: BufRead> Iterator for InputLines<R> {
    type Item = io::Result<InputLine>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut line = Vec::new();
        let mut length = 0;
        let mut ended = false;
        // Held whole up to the cap, plus what is dropped before the line is measured: its `\r`
        // and, on the first line, a byte-order mark.
        let held = self.max.saturating_add(if self.started { 1 } else { 4 });
        loop {
            let available = match self.reader.fill_buf() {
                Ok(available) => available,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Some(Err(e)),
            };
            if available.is_empty() {
                break;
            }
            let (chunk, found) = match available.iter().position(|&byte| byte == b'\n') {
                Some(end) => (&available[..end], true),
                None => (available, false),
            };
            length += chunk.len();
            if length <= held {
                line.extend_from_slice(chunk);
            } else if line.len() < TOO_LONG_HEAD {
                let room = TOO_LONG_HEAD - line.len();
                line.extend_from_slice(&chunk[..room.min(chunk.len())]);
            } else {
                line.truncate(TOO_LONG_HEAD);
            }
            let used = chunk.len() + usize::from(found);
            self.reader.consume(used);
            if found {
                ended = true;
                break;
            }
        }
        if !ended && length == 0 {
            return None;
        }
        if !self.started {
            self.started = true;
            if line.starts_with(b"\xEF\xBB\xBF") {
                line.drain(..3);
                length -= 3;
            }
        }
        if length <= self.max.saturating_add(1) && line.last() == Some(&b'\r') {
            line.pop();
            length -= 1;
        }
        if length > self.max {
            line.truncate(TOO_LONG_HEAD);
            return Some(Ok(InputLine::TooLong {
                bytes: length,
                head: line,
            }));
        }
        Some(Ok(match String::from_utf8(line) {
            Ok(text) => InputLine::Text(text),
            Err(e) => InputLine::NotUtf8(e.into_bytes()),
        }))
    }
}

/// What one input line is.
#[derive(Debug)]
pub enum Parsed {
    /// A blank line or a comment (`#`).
    Skip,
    /// A request to send.
    Request(Request),
    /// A line that is not a request.
    Malformed(Malformed),
}

/// A line that is not a request: why, its text, and its id when it is a JSON object that has
/// one, so that its record can be matched to its row.
#[derive(Debug)]
pub struct Malformed {
    /// Credentials redacted, cut short.
    message: String,
    /// As read: not yet redacted or cut.
    text: String,
    id: Option<serde_json::Value>,
}

impl Malformed {
    fn new(message: String, text: String) -> Self {
        let id = text
            .trim_start()
            .starts_with('{')
            .then(|| serde_json::from_str::<serde_json::Value>(&text).ok())
            .flatten()
            .and_then(|mut spec| spec.get_mut("id").map(serde_json::Value::take));
        let message = cut(&redact_text(&message), MESSAGE_CUT).into_owned();
        Self { message, text, id }
    }

    /// Why the line is not a request, as shown: credentials redacted, cut short.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The record's own keys, as a JSON object: `id` if known, `ok`, `error` and `text` (the
    /// line's text, credentials redacted, cut to [`TEXT_CUT`] bytes).
    pub fn record(&self) -> String {
        let text = redact_text(&self.text);
        let mut body = String::from("{");
        if let Some(id) = &self.id {
            body.push_str(&format!("\"id\":{id},"));
        }
        body.push_str(&format!(
            r#""ok":false,"error":{{"kind":"malformed","message":{}}},"text":{}}}"#,
            json_string(&self.message),
            json_string(&cut(&text, TEXT_CUT)),
        ));
        body
    }
}

/// `text` as a JSON string.
pub fn json_string(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

/// `text` cut to at most `max` bytes at a character boundary, `...` marking a cut.
fn cut(text: &str, max: usize) -> Cow<'_, str> {
    if text.len() <= max {
        return text.into();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end]).into()
}

/// A request from one input line, or why it is none: plain URLs get `method`, and every request
/// gets the `headers` it does not set itself.
pub fn parse_line(
    line: InputLine,
    method: &Method,
    headers: &[(String, String)],
    max_line_bytes: usize,
) -> Parsed {
    let line = match line {
        InputLine::Text(line) => line,
        InputLine::NotUtf8(bytes) => {
            return Parsed::Malformed(Malformed::new(
                "not UTF-8 text".to_owned(),
                String::from_utf8_lossy(&bytes).into_owned(),
            ));
        }
        InputLine::TooLong { bytes, head } => {
            return Parsed::Malformed(Malformed::new(
                format!("a line of {bytes} bytes or more, over --max-line-bytes {max_line_bytes}"),
                String::from_utf8_lossy(&head).into_owned(),
            ));
        }
    };
    let trimmed = line.trim();
    if trimmed.is_empty() || trimmed.starts_with('#') {
        return Parsed::Skip;
    }
    let request = if trimmed.starts_with('{') {
        match Request::from_spec_json(trimmed) {
            Ok(request) => match Url::parse(request.url()) {
                Ok(_) => request,
                Err(e) => {
                    return Parsed::Malformed(Malformed::new(
                        format!("bad request spec: url: {e}"),
                        line,
                    ));
                }
            },
            Err(e) => {
                return Parsed::Malformed(Malformed::new(format!("bad request spec: {e}"), line));
            }
        }
    } else if trimmed.contains(char::is_whitespace) {
        return Parsed::Malformed(Malformed::new(
            "not a URL: it holds spaces".to_owned(),
            line,
        ));
    } else if let Err(e) = Url::parse(trimmed) {
        return Parsed::Malformed(Malformed::new(format!("not a URL: {e}"), line));
    } else {
        Request::new(method.clone(), trimmed)
    };
    let mut request = request;
    for (name, value) in headers {
        if !request.headers().contains_key(name.as_str()) {
            request = request.header(name, value);
        }
    }
    Parsed::Request(request)
}

#[cfg(test)]
mod tests {
    use std::io::{BufReader, Read};

    use super::*;

    fn lines(input: impl BufRead, max: usize) -> Vec<InputLine> {
        InputLines::new(input, max)
            .collect::<io::Result<_>>()
            .expect("reading from memory")
    }

    fn texts(input: &[u8], max: usize) -> Vec<String> {
        lines(input, max)
            .into_iter()
            .map(|line| match line {
                InputLine::Text(text) => text,
                other => panic!("{other:?}"),
            })
            .collect()
    }

    fn parse(text: &str) -> Parsed {
        let headers = [("X-Run".to_owned(), "7".to_owned())];
        parse_line(InputLine::Text(text.to_owned()), &Method::PUT, &headers, 64)
    }

    fn malformed(text: &str) -> Malformed {
        match parse(text) {
            Parsed::Malformed(malformed) => malformed,
            other => panic!("{text:?} gave {other:?}"),
        }
    }

    fn record(malformed: &Malformed) -> serde_json::Value {
        serde_json::from_str(&malformed.record()).expect("a record is a JSON object")
    }

    #[test]
    fn line_ends_are_dropped_crlf_included_and_a_last_line_needs_none() {
        assert_eq!(texts(b"a\nb\r\n\r\nc", 64), ["a", "b", "", "c"]);
        assert_eq!(texts(b"a\n", 64), ["a"]);
        assert_eq!(texts(b"\n", 64), [""]);
        assert!(texts(b"", 64).is_empty());
        assert_eq!(texts(b"a\rb\n", 64), ["a\rb"], "a lone CR is text");
    }

    #[test]
    fn a_byte_order_mark_is_dropped_at_the_start_only() {
        assert_eq!(
            texts(b"\xEF\xBB\xBFhttp://h/\n\xEF\xBB\xBFx", 64)[0],
            "http://h/"
        );
        let second = &lines(&b"\xEF\xBB\xBFa\n\xEF\xBB\xBFb"[..], 64)[1];
        assert!(matches!(second, InputLine::Text(text) if text == "\u{feff}b"));
        // Read a byte at a time, the mark is split across reads.
        let one_by_one = BufReader::with_capacity(1, &b"\xEF\xBB\xBFa\r\nb"[..]);
        let read: Vec<String> = lines(one_by_one, 64)
            .into_iter()
            .map(|line| format!("{line:?}"))
            .collect();
        assert_eq!(read, [r#"Text("a")"#, r#"Text("b")"#]);
    }

    #[test]
    fn blank_lines_and_comments_are_skipped() {
        for text in ["", "   ", "\t", "# a comment", "  #http://h/", "\u{a0}"] {
            assert!(matches!(parse(text), Parsed::Skip), "{text:?}");
        }
    }

    #[test]
    fn a_line_that_is_not_utf8_is_malformed_with_its_text_shown_lossily() {
        let read = lines(&b"ok\nhttp://h/\xFF\n"[..], 64);
        let InputLine::NotUtf8(bytes) = &read[1] else {
            panic!("{read:?}");
        };
        assert_eq!(bytes, b"http://h/\xFF");
        let Parsed::Malformed(malformed) =
            parse_line(read.into_iter().nth(1).unwrap(), &Method::GET, &[], 64)
        else {
            panic!("not UTF-8 is malformed");
        };
        assert_eq!(malformed.message(), "not UTF-8 text");
        assert_eq!(record(&malformed)["text"], "http://h/\u{fffd}");
    }

    #[test]
    fn an_over_long_line_is_cut_as_it_is_read_and_the_next_line_is_whole() {
        const LONG: u64 = 8 << 20;
        let input = io::repeat(b'a').take(LONG).chain(&b"\nhttp://h/next\n"[..]);
        let mut read = InputLines::new(BufReader::new(input), 1024);
        let Some(Ok(InputLine::TooLong { bytes, head })) = read.next() else {
            panic!("the long line is too long");
        };
        assert_eq!(bytes as u64, LONG);
        assert_eq!(head.len(), TOO_LONG_HEAD);
        assert!(
            head.capacity() < 64 << 10,
            "held {} bytes of it",
            head.capacity()
        );
        assert!(matches!(read.next(), Some(Ok(InputLine::Text(t))) if t == "http://h/next"));
        assert!(read.next().is_none());

        let Parsed::Malformed(malformed) =
            parse_line(InputLine::TooLong { bytes, head }, &Method::GET, &[], 1024)
        else {
            panic!("too long is malformed");
        };
        assert_eq!(
            malformed.message(),
            format!("a line of {LONG} bytes or more, over --max-line-bytes 1024")
        );
        let text = record(&malformed)["text"].as_str().unwrap().to_owned();
        assert_eq!(text, format!("{}...", "a".repeat(TEXT_CUT)));
    }

    #[test]
    fn the_cap_is_on_bytes_and_a_line_at_it_is_whole() {
        let read = lines(&b"abcd\nabcde\nab\n"[..], 4);
        assert!(matches!(&read[0], InputLine::Text(t) if t == "abcd"));
        assert!(matches!(&read[1], InputLine::TooLong { bytes: 5, head } if head == b"abcde"));
        assert!(matches!(&read[2], InputLine::Text(t) if t == "ab"));
    }

    #[test]
    fn a_lines_bom_and_cr_do_not_count_against_the_cap() {
        let read = lines(&b"\xEF\xBB\xBFabcd\r\nabcd\r\nabcde\r\n"[..], 4);
        assert!(
            matches!(&read[0], InputLine::Text(t) if t == "abcd"),
            "{read:?}"
        );
        assert!(
            matches!(&read[1], InputLine::Text(t) if t == "abcd"),
            "{read:?}"
        );
        assert!(
            matches!(&read[2], InputLine::TooLong { bytes: 6, .. }),
            "{read:?}"
        );
        assert!(matches!(&lines(&b"\r"[..], 0)[0], InputLine::Text(t) if t.is_empty()));
    }

    #[test]
    fn a_first_line_at_a_cap_past_the_head_kept_is_whole_with_a_bom() {
        // It was cut to its head, BOM included, and then measured without the BOM: a line
        // under the cap, silently cut short.
        let max = 2 * TOO_LONG_HEAD;
        let mut input = b"\xEF\xBB\xBF".to_vec();
        input.extend(std::iter::repeat_n(b'a', max));
        let read = lines(&input[..], max);
        assert!(
            matches!(&read[..], [InputLine::Text(t)] if t.len() == max),
            "{read:?}"
        );
    }

    #[test]
    fn a_plain_url_gets_the_commands_method_and_headers() {
        let Parsed::Request(request) = parse("  http://h/a?b=1  ") else {
            panic!("a URL is a request");
        };
        assert_eq!(request.url(), "http://h/a?b=1");
        assert_eq!(request.method(), Method::PUT);
        assert_eq!(request.headers()["x-run"], "7");
    }

    #[test]
    fn a_json_spec_keeps_its_own_method_and_headers() {
        let Parsed::Request(request) =
            parse(r#"{"method": "POST", "url": "http://h/", "headers": {"X-Run": "own"}}"#)
        else {
            panic!("a spec is a request");
        };
        assert_eq!(request.method(), Method::POST);
        assert_eq!(request.headers()["x-run"], "own");
        let Parsed::Request(request) = parse(r#"{"url": "http://h/"}"#) else {
            panic!("a spec is a request");
        };
        assert_eq!(request.method(), Method::GET);
        assert_eq!(request.headers()["x-run"], "7");
    }

    #[test]
    fn invalid_urls_and_specs_are_malformed_with_their_reason() {
        let cases = [
            ("http//h/", "not a URL: relative URL without a base"),
            ("http://h/a b", "not a URL: it holds spaces"),
            (r#"{"url": "h/"}"#, "bad request spec: url: "),
            (
                r#"{"url": "http://h/", "timeout": "x"}"#,
                "bad request spec: ",
            ),
            ("{not json", "bad request spec: "),
        ];
        for (text, reason) in cases {
            let malformed = malformed(text);
            assert!(
                malformed.message().starts_with(reason),
                "{text:?}: {malformed:?}"
            );
            let record = record(&malformed);
            assert_eq!(record["ok"], false);
            assert_eq!(record["error"]["kind"], "malformed");
            assert_eq!(record["error"]["message"], malformed.message());
            assert_eq!(record["text"], text);
        }
    }

    #[test]
    fn a_malformed_spec_keeps_its_id() {
        let record = record(&malformed(r#"{"id": [1, "a"], "url": 5}"#));
        assert_eq!(record["id"], serde_json::json!([1, "a"]));
        assert!(self::record(&malformed("{\"id\": 1")).get("id").is_none());
    }

    #[test]
    fn credentials_are_redacted_in_the_message_and_the_text() {
        let cases = [
            (
                r#"{"url": "http://bob:hunter2@h:99999/", "headers": {"Authorization": "Bearer t0k3n"}}"#,
                &["hunter2", "t0k3n"][..],
            ),
            (
                r#"{"method": "http://bob:hunter2@h/", "url": "http://h/", "auth": ["a", "t0k3n"]}"#,
                &["hunter2", "t0k3n"],
            ),
            ("http://bob:hunter2@h/ and more", &["hunter2"]),
            ("http://bob:hunter2@h:99999/", &["hunter2"]),
        ];
        for (text, secrets) in cases {
            let malformed = malformed(text);
            let record = malformed.record();
            assert!(record.contains("bob:***@h"), "{record}");
            for secret in secrets {
                assert!(!record.contains(secret), "{record}");
                assert!(!malformed.message().contains(secret), "{malformed:?}");
            }
        }
    }
}
