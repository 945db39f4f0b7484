//! The command's input (`parfetch::cli_input`): arbitrary bytes read as lines, each line read as
//! a request, a malformed line or a blank line or comment. The first byte sets the line cap
//! (mostly small, so that over-long lines are common) and the second the size of the reads
//! (down to a byte at a time). Checked: nothing panics; the lines read are the input's lines,
//! in order, one each, as a plain split on `\n` gives them (line N read is line N given); every
//! line that is not blank or a comment yields a request or a malformed line; a malformed line's
//! record is a JSON object that shows no password of a URL in the line.

#![no_main]

use std::io::BufReader;

use libfuzzer_sys::fuzz_target;
use parfetch::cli_input::{InputLine, InputLines, Parsed, TEXT_CUT, TOO_LONG_HEAD, parse_line};
use parfetch::{Method, Url};

fuzz_target!(|data: &[u8]| {
    let [cap, read_size, input @ ..] = data else {
        return;
    };
    let max = usize::from(cap & 0x7f) * if cap & 0x80 == 0 { 1 } else { 16 };
    let reader = BufReader::with_capacity(usize::from(*read_size).max(1), input);
    let headers = [("X-Fuzz".to_owned(), "1".to_owned())];

    let mut given: Vec<&[u8]> = input.split(|&byte| byte == b'\n').collect();
    if input.is_empty() || input.ends_with(b"\n") {
        given.pop();
    }
    let mut read = 0;
    for (number, line) in (1..).zip(InputLines::new(reader, max)) {
        let line = line.expect("reading from memory does not fail");
        let Some(&given) = given.get(number - 1) else {
            panic!("line {number} read, of {} given: {line:?}", given.len());
        };
        read = number;
        check_read(number, given, &line, max);

        let text = match &line {
            InputLine::Text(text) => Some(text.clone()),
            _ => None,
        };
        let shown = match &line {
            InputLine::Text(text) => text.clone(),
            InputLine::NotUtf8(bytes) | InputLine::TooLong { head: bytes, .. } => {
                String::from_utf8_lossy(bytes).into_owned()
            }
        };
        match parse_line(line, &Method::GET, &headers, max) {
            Parsed::Skip => {
                let text = text.expect("only text is skipped");
                let trimmed = text.trim();
                assert!(trimmed.is_empty() || trimmed.starts_with('#'), "{text:?}");
            }
            Parsed::Request(request) => {
                let text = text.expect("only text is a request");
                let trimmed = text.trim();
                assert!(!trimmed.is_empty() && !trimmed.starts_with('#'), "{text:?}");
                assert!(Url::parse(request.url()).is_ok(), "{request:?}");
                assert!(request.headers().contains_key("x-fuzz"), "{request:?}");
            }
            Parsed::Malformed(malformed) => {
                if let Some(text) = &text {
                    let trimmed = text.trim();
                    assert!(!trimmed.is_empty() && !trimmed.starts_with('#'), "{text:?}");
                }
                let record: serde_json::Value =
                    serde_json::from_str(&malformed.record()).expect("a record is JSON");
                assert_eq!(record["ok"], false);
                assert_eq!(record["error"]["kind"], "malformed");
                assert_eq!(record["error"]["message"], malformed.message());
                assert!(!malformed.message().is_empty());
                let record_text = record["text"].as_str().expect("a record has its text");
                assert!(record_text.len() <= TEXT_CUT + 3, "{record_text:?}");
                for password in url_passwords(&shown) {
                    assert!(
                        !record_text.contains(&password)
                            && !malformed.message().contains(&password),
                        "password {password:?} of {shown:?} shown: {malformed:?}"
                    );
                }
            }
        }
    }
    assert_eq!(read, given.len(), "lines read of those given");
});

/// Line `number` as read is `given` (a line of the input, without its `\n`), its BOM dropped
/// if it is the first, its `\r` if it ends with one, and cut if over `max`.
fn check_read(number: usize, given: &[u8], line: &InputLine, max: usize) {
    let given = match given.strip_prefix(b"\xEF\xBB\xBF") {
        Some(rest) if number == 1 => rest,
        _ => given,
    };
    let text = given.strip_suffix(b"\r").unwrap_or(given);
    match line {
        InputLine::Text(read) => {
            assert!(text.len() <= max, "line {number}: {} > {max}", text.len());
            assert_eq!(read.as_bytes(), text, "line {number}");
        }
        InputLine::NotUtf8(read) => {
            assert!(text.len() <= max, "line {number}: {} > {max}", text.len());
            assert_eq!(read, text, "line {number}");
            assert!(std::str::from_utf8(read).is_err(), "line {number}");
        }
        InputLine::TooLong { bytes, head } => {
            assert!(text.len() > max, "line {number}: {} <= {max}", text.len());
            assert_eq!(*bytes, given.len(), "line {number}");
            assert!(given.starts_with(head), "line {number}");
            assert!(head.len() <= TOO_LONG_HEAD, "line {number}");
            assert!(
                head.len() >= given.len().min(TOO_LONG_HEAD - 3),
                "line {number}: {} of {}",
                head.len(),
                given.len()
            );
        }
    }
}

/// The passwords of the URLs in `text` (and in its strings, when it is JSON) that the records
/// must not show: those that appear in `text` once, as they are, long enough and with a digit
/// so that no message holds them by chance.
fn url_passwords(text: &str) -> Vec<String> {
    let mut strings = vec![text.to_owned()];
    if let Ok(json) = serde_json::from_str::<serde_json::Value>(text) {
        collect_strings(&json, &mut strings);
    }
    let mut passwords = Vec::new();
    for string in &strings {
        for (at, _) in string.match_indices("://") {
            let start = string[..at]
                .trim_end_matches(|c: char| c.is_ascii_alphanumeric() || "+-.".contains(c))
                .len();
            let end = string[at..]
                .find(|c: char| c.is_whitespace() || "\"'<>".contains(c))
                .map_or(string.len(), |i| at + i);
            let Ok(url) = Url::parse(&string[start..end]) else {
                continue;
            };
            if let Some(password) = url.password()
                && password.len() >= 6
                && password.bytes().all(|b| b.is_ascii_alphanumeric())
                && password.bytes().any(|b| b.is_ascii_digit())
                && text.matches(password).count() == 1
            {
                passwords.push(password.to_owned());
            }
        }
    }
    passwords
}

fn collect_strings(json: &serde_json::Value, strings: &mut Vec<String>) {
    match json {
        serde_json::Value::String(string) => strings.push(string.clone()),
        serde_json::Value::Array(items) => {
            items.iter().for_each(|item| collect_strings(item, strings))
        }
        serde_json::Value::Object(map) => map
            .values()
            .for_each(|value| collect_strings(value, strings)),
        _ => {}
    }
}
