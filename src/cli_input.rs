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
/// (`\n` or `\r\n`); a line over `max` bytes is skipped as it is read, not held whole.
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
            if length <= self.max {
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
        if length <= self.max && line.last() == Some(&b'\r') {
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
        match Request::from_json(trimmed) {
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
