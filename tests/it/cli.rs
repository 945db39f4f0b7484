//! The `parfetch` command, run as a process against loopback servers.
#![cfg(feature = "cli")]

use crate::support;

use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use support::{Held, TestServer, refused_url};

fn parfetch(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_parfetch"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("parfetch runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("parfetch ends")
}

/// The command with its standard streams piped, and `input` written to it from a thread of its
/// own, so that a test can read the records as they come.
fn spawn_with_input(args: &[&str], input: String) -> std::process::Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_parfetch"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("parfetch runs");
    let mut stdin = child.stdin.take().expect("stdin");
    std::thread::spawn(move || {
        let _ = stdin.write_all(input.as_bytes());
    });
    child
}

fn records(output: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("each line is JSON"))
        .collect()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn urls_from_stdin_become_json_records_and_exit_zero() {
    let server = TestServer::start();
    let input: String = (0..50)
        .map(|i| server.url(&format!("/bytes/{i}\n")))
        .collect();
    let output = parfetch(&["--keep-order"], &input);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let records = records(&output);
    assert_eq!(records.len(), 50);
    for (i, record) in records.iter().enumerate() {
        assert_eq!(record["ok"], true);
        assert_eq!(record["status"], 200);
        assert_eq!(record["request"]["url"], server.url(&format!("/bytes/{i}")));
        assert_eq!(record["body"].as_str().unwrap().len(), i);
        assert_eq!(record["attempts"], 1);
    }
    let summary = stderr(&output);
    assert!(summary.contains("50 requests"), "{summary}");
    assert!(summary.contains("200: 50"), "{summary}");
    assert!(summary.contains("p99"), "{summary}");
}

#[test]
fn files_json_specs_and_bad_lines() {
    let server = TestServer::start();
    let dir = std::env::temp_dir().join(format!("parfetch-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let first = dir.join("first.txt");
    let second = dir.join("second.jsonl");
    std::fs::write(
        &first,
        format!("# a comment\n{}\n\nnot a url\n", server.url("/a")),
    )
    .unwrap();
    std::fs::write(
        &second,
        format!(
            "{{\"method\": \"POST\", \"url\": \"{}\", \"json\": {{\"id\": 7}}, \"headers\": {{\"X-Id\": \"7\"}}, \"id\": \"row-7\"}}\n{{\"url\": \"{}\", \"verify\": false, \"id\": 8}}\n{{\"url\": 5}}\n",
            server.url("/echo"),
            server.url("/b")
        ),
    )
    .unwrap();
    let out = dir.join("out.jsonl");
    let output = parfetch(
        &[
            first.to_str().unwrap(),
            second.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--keep-order",
        ],
        "",
    );
    assert_eq!(
        output.status.code(),
        Some(1),
        "malformed lines fail the run"
    );
    assert!(output.stdout.is_empty(), "results went to the file");
    let err = stderr(&output);
    assert!(err.contains("first.txt:4: not a URL"), "{err}");
    assert!(err.contains("second.jsonl:2: bad request spec"), "{err}");
    assert!(err.contains("unknown field `verify`"), "{err}");
    assert!(
        err.contains("second.jsonl:3: bad request spec: url: invalid type"),
        "{err}"
    );
    assert!(err.contains("3 malformed lines"), "{err}");
    assert!(err.contains("7 lines read, 2 blank or comments"), "{err}");

    // One record per line that is not blank or a comment, in input order, each naming its
    // line within its file and, as there are several files, the file.
    let written: Vec<Value> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let places: Vec<(&str, u64)> = written
        .iter()
        .map(|r| (r["input"].as_str().unwrap(), r["line"].as_u64().unwrap()))
        .collect();
    let (first_name, second_name) = (first.to_str().unwrap(), second.to_str().unwrap());
    assert_eq!(
        places,
        [
            (first_name, 2),
            (first_name, 4),
            (second_name, 1),
            (second_name, 2),
            (second_name, 3)
        ]
    );
    assert_eq!(written[0]["request"]["url"], server.url("/a"));
    assert!(written[0].get("id").is_none(), "a URL line has no id");
    assert_eq!(written[1]["ok"], false);
    assert_eq!(written[1]["error"]["kind"], "malformed");
    assert_eq!(written[1]["text"], "not a url");
    assert_eq!(written[2]["id"], "row-7");
    let echo: Value = serde_json::from_str(written[2]["body"].as_str().unwrap()).unwrap();
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["body"], r#"{"id":7}"#);
    assert_eq!(echo["headers"]["x-id"], "7");
    assert!(
        !written[2]["body"].as_str().unwrap().contains("row-7"),
        "the id is never sent"
    );
    assert_eq!(written[3]["error"]["kind"], "malformed");
    assert_eq!(written[3]["id"], 8, "a malformed spec's id is kept");
    assert!(
        written[3]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("unknown field `verify`")
    );
    assert_eq!(written[4]["error"]["kind"], "malformed");

    let output = parfetch(
        &[
            first.to_str().unwrap(),
            "--allow-failures",
            "-o",
            out.to_str().unwrap(),
        ],
        "",
    );
    assert_eq!(output.status.code(), Some(0));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn failed_requests_exit_one_with_typed_records() {
    let refused = refused_url();
    let output = parfetch(&[], &format!("{refused}\nftp://127.0.0.1/x\n"));
    assert_eq!(output.status.code(), Some(1));
    let records = records(&output);
    let mut kinds: Vec<&str> = records
        .iter()
        .map(|r| r["error"]["kind"].as_str().unwrap())
        .collect();
    kinds.sort_unstable();
    assert_eq!(kinds, ["connect", "unsupported_scheme"]);
    assert!(records.iter().all(|r| r["ok"] == false));
    assert!(stderr(&output).contains("by error: connect: 1, unsupported_scheme: 1"));

    let output = parfetch(&["--allow-failures"], &format!("{refused}\n"));
    assert_eq!(output.status.code(), Some(0));
}

#[test]
fn http_error_statuses_are_responses_and_exit_zero() {
    let server = TestServer::start();
    let output = parfetch(&[], &format!("{}\n", server.url("/status/404")));
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(records(&output)[0]["status"], 404);
}

#[test]
fn headers_method_and_retries_apply() {
    let server = TestServer::start();
    let output = parfetch(
        &["-H", "X-Token: abc", "-X", "put", "--keep-order"],
        &format!("{}\n", server.url("/echo")),
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let echo: Value = serde_json::from_str(records(&output)[0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(echo["method"], "PUT");
    assert_eq!(echo["headers"]["x-token"], "abc");

    let output = parfetch(
        &["--retries", "2"],
        &format!("{}\n", server.url("/flaky/cli?fail=2")),
    );
    let record = &records(&output)[0];
    assert_eq!(
        (record["status"].as_u64(), record["attempts"].as_u64()),
        (Some(200), Some(3))
    );
}

#[test]
fn usage_errors_exit_two() {
    for args in [
        &["--no-such-flag"][..],
        &["--timeout", "-1"],
        &["-H", "no colon"],
        &["-H", "bad name: v"],
        &["/no/such/file"],
        &["-j", "0"],
        &["-j", "100000"],
        &["--threads", "0"],
        &["--threads", "100000"],
        &["--rate", "1e-300"],
        &["--rate", "NaN"],
        &["--rate", "0"],
        &["--max-per-host", "0"],
        &["--retries", "99999999999"],
    ] {
        let output = parfetch(args, "");
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            stderr(&output)
        );
    }
}

#[test]
fn help_lists_the_exit_statuses() {
    let output = parfetch(&["--help"], "");
    assert_eq!(output.status.code(), Some(0));
    let help = String::from_utf8_lossy(&output.stdout);
    for status in [
        "\n  0  every line",
        "\n  1  some requests",
        "\n  2  usage",
        "\n  3  fatal",
    ] {
        assert!(help.contains(status), "{status:?} in {help}");
    }
}

#[test]
fn absurd_concurrency_and_threads_are_refused_in_the_options_words() {
    let output = parfetch(&["-j", "100000"], "");
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("--concurrency must be from 1 to 10000, not 100000"),
        "{}",
        stderr(&output)
    );
    let output = parfetch(&["--threads", "5000"], "");
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("--threads must be from 1 to 1024, not 5000"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn concurrency_is_the_number_in_flight_in_total() {
    let server = TestServer::start();
    let input: String = (0..200)
        .map(|i| server.url(&format!("/delay/20?i={i}\n")))
        .collect();
    let output = parfetch(&["-j", "12", "--threads", "2"], &input);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert_eq!(records(&output).len(), 200);
    let max = server.stats().max_in_flight();
    assert!((7..=12).contains(&max), "{max} in flight with -j 12");
}

#[test]
fn a_held_request_holds_only_its_own_slot_in_the_command() {
    let held = Held::start();
    let server = TestServer::start();
    let mut input = format!("{}\n", held.server.url("/slow"));
    for i in 0..1_000 {
        input.push_str(&server.url(&format!("/bytes/3?i={i}\n")));
    }
    // Records go to a file: a pipe nobody reads would hold the command back once full.
    let dir = std::env::temp_dir().join(format!("parfetch-held-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let records_path = dir.join("records.jsonl");
    let mut child = Command::new(env!("CARGO_BIN_EXE_parfetch"))
        .args(["-j", "8", "-o"])
        .arg(&records_path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("parfetch runs");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(input.as_bytes()).expect("write stdin");
    drop(stdin);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while server.stats().requests() < 1_000 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let answered = server.stats().requests();
    held.release();
    let output = child.wait_with_output().expect("parfetch ends");
    assert_eq!(
        answered, 1_000,
        "only {answered} answered while one request was held"
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let written = std::fs::read_to_string(&records_path).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(written.lines().count(), 1_001);
}

#[test]
fn completion_order_still_writes_every_result_once() {
    let server = TestServer::start();
    let input: String = (0..300)
        .map(|i| server.url(&format!("/delay/{}?i={i}\n", i % 7)))
        .collect();
    let output = parfetch(&["-j", "8", "--threads", "2"], &input);
    assert_eq!(output.status.code(), Some(0));
    let mut urls: Vec<String> = records(&output)
        .iter()
        .map(|r| r["request"]["url"].as_str().unwrap().to_owned())
        .collect();
    urls.sort();
    urls.dedup();
    assert_eq!(urls.len(), 300);
}

/// The system's roots are loaded on the first TLS handshake; `SSL_CERT_FILE` is the standard way
/// to point a process at other ones, here the CA of the test server.
#[test]
fn https_is_verified_against_the_system_roots_loaded_on_first_use() {
    let server = support::TlsServer::start();
    let ca = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/tls-ca.pem");
    let run = |ssl_cert_file: Option<&str>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_parfetch"));
        command
            .arg("--allow-failures")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(path) = ssl_cert_file {
            command
                .env("SSL_CERT_FILE", path)
                .env_remove("SSL_CERT_DIR");
        }
        let mut child = command.spawn().expect("parfetch runs");
        let input = format!("{}\n{}\n", server.url("/a"), server.url("/b"));
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
        let output = child.wait_with_output().expect("parfetch ends");
        assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
        records(&output)
    };

    let trusted = run(Some(ca));
    assert_eq!(trusted.len(), 2);
    for record in &trusted {
        assert_eq!(record["ok"], true, "{record}");
        assert_eq!(record["body"], "secure");
    }

    // An empty file trusts nothing: every handshake fails with the reason, nothing else does.
    let empty = std::env::temp_dir().join(format!("parfetch-no-roots-{}.pem", std::process::id()));
    std::fs::write(&empty, "").expect("temp file");
    let untrusted = run(Some(empty.to_str().expect("UTF-8 temp path")));
    let _ = std::fs::remove_file(&empty);
    assert_eq!(untrusted.len(), 2);
    for record in &untrusted {
        assert_eq!(record["ok"], false, "{record}");
        let message = record["error"]["message"].as_str().unwrap_or_default();
        assert!(message.contains("TLS roots"), "{record}");
    }
}

/// A bad line costs only itself: a line that is not UTF-8, one over the length cap, a
/// byte-order mark at the start of the input.
#[test]
fn a_bad_line_costs_only_itself() {
    let server = TestServer::start();
    let mut input: Vec<u8> = b"\xEF\xBB\xBF".to_vec();
    for i in 0..100 {
        input.extend_from_slice(server.url(&format!("/a/{i}\r\n")).as_bytes());
    }
    input.extend_from_slice(b"http://127.0.0.1/\xff\xfe\n");
    input.extend_from_slice(&vec![b'x'; 5_000]);
    input.push(b'\n');
    for i in 0..100 {
        input.extend_from_slice(server.url(&format!("/b/{i}\n")).as_bytes());
    }
    let mut child = Command::new(env!("CARGO_BIN_EXE_parfetch"))
        .args(["--max-line-bytes", "1000", "--keep-order"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("parfetch runs");
    child.stdin.take().unwrap().write_all(&input).unwrap();
    let output = child.wait_with_output().unwrap();

    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let records = records(&output);
    assert_eq!(records.len(), 202, "one record for each line");
    assert_eq!(records[0]["request"]["url"], server.url("/a/0"));
    for (i, record) in records.iter().enumerate() {
        assert_eq!(record["line"], i + 1);
        assert_eq!(record["ok"], !(100..102).contains(&i), "{record}");
    }
    assert_eq!(records[100]["error"]["message"], "not UTF-8 text");
    assert_eq!(records[100]["text"], "http://127.0.0.1/\u{fffd}\u{fffd}");
    assert_eq!(
        records[101]["text"],
        format!("{}...", "x".repeat(256)),
        "cut short"
    );
    assert_eq!(server.stats().requests(), 200);
    let messages = stderr(&output);
    assert!(messages.contains("-:101: not UTF-8 text"), "{messages}");
    assert!(
        messages.contains("-:102: a line of 5000 bytes or more, over --max-line-bytes 1000"),
        "{messages}"
    );
    assert!(messages.contains("2 malformed lines"), "{messages}");
}

#[test]
fn records_and_messages_of_the_command_hold_no_credentials() {
    let server = TestServer::start();
    let refused = refused_url().replace("http://", "http://bob:pa55word@");
    let input = format!(
        "{}\n{refused}\n{{\"url\": \"{}\", \"headers\": {{\"X-Api-Key\": \"k3y-value\"}}}}\n{{\"url\": \"http://eve:pa55word@h/\", \"auth\": [\"eve\", \"pa55word\"], \"headers\": {{\"X-Api-Key\": \"k3y-value\"}}, \"verify\": 0}}\n",
        server
            .url("/echo")
            .replace("http://", "http://alice:pa55word@"),
        server.url("/echo"),
    );
    let output = parfetch(&["-H", "Authorization: Bearer s3cr3t-token"], &input);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let everything = format!("{stdout}{}", stderr(&output));
    for secret in ["pa55word", "s3cr3t-token", "k3y-value"] {
        // The echo server's bodies hold what was sent; the records' requests must not.
        for record in records(&output) {
            let request = record["request"].to_string();
            let error = record["error"].to_string();
            let text = record["text"].to_string();
            assert!(!request.contains(secret), "{secret} in {request}");
            assert!(!error.contains(secret), "{secret} in {error}");
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        assert!(!stderr(&output).contains(secret), "{secret} in stderr");
    }
    assert!(everything.contains("bob:***@"), "{everything}");
    assert!(
        stdout.contains(r#"http://eve:***@h/"#),
        "the malformed line's text: {stdout}"
    );
    assert!(
        stdout.contains("\"authorization\":\"<redacted>\""),
        "{stdout}"
    );
}

/// Proxies from the environment are obeyed, as curl and requests do, and the summary says so;
/// `--no-proxy` ignores them; `NO_PROXY` exempts its hosts.
#[test]
fn environment_proxies_are_obeyed_visibly_and_can_be_turned_off() {
    let target = TestServer::start();
    let proxy_seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = std::sync::Arc::clone(&proxy_seen);
    let proxy = support::RawServer::start(move |mut stream| {
        support::read_head(&mut stream);
        counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        support::write_all(
            &mut stream,
            b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\nconnection: close\r\n\r\nvia proxy",
        );
    });
    let run = |args: &[&str], no_proxy: Option<&str>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_parfetch"));
        command
            .args(args)
            .env("HTTP_PROXY", proxy.url(""))
            .env_remove("http_proxy")
            .env_remove("ALL_PROXY")
            .env_remove("all_proxy")
            .env_remove("NO_PROXY")
            .env_remove("no_proxy")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(hosts) = no_proxy {
            command.env("NO_PROXY", hosts);
        }
        let mut child = command.spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{}\n", target.url("/a")).as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };

    let through = run(&[], None);
    assert_eq!(proxy_seen.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(target.stats().requests(), 0);
    assert!(
        stderr(&through).contains("through proxies: http://127.0.0.1:"),
        "{}",
        stderr(&through)
    );
    assert!(
        stderr(&through).contains("(HTTP_PROXY)"),
        "{}",
        stderr(&through)
    );

    let direct = run(&["--no-proxy"], None);
    assert_eq!(target.stats().requests(), 1);
    assert!(
        !stderr(&direct).contains("through proxies"),
        "{}",
        stderr(&direct)
    );

    run(&[], Some("127.0.0.1"));
    assert_eq!(target.stats().requests(), 2, "NO_PROXY exempts its hosts");
    assert_eq!(proxy_seen.load(std::sync::atomic::Ordering::SeqCst), 1);

    let custom = run(&["--proxy", &proxy.url("")], None);
    assert!(
        stderr(&custom).contains("(proxy setting)"),
        "{}",
        stderr(&custom)
    );
    assert_eq!(proxy_seen.load(std::sync::atomic::Ordering::SeqCst), 2);
}

/// Every line that is not blank or a comment yields exactly one record, also in completion
/// order and when malformed lines come in runs longer than the command holds back.
#[test]
fn every_line_yields_one_record_in_either_order() {
    let server = TestServer::start();
    let mut input = String::new();
    let mut expected = Vec::new();
    for i in 0..600u64 {
        let line = match i % 10 {
            0 => "# comment".to_owned(),
            1 => String::new(),
            _ if (200..400).contains(&i) => format!("{{\"url\": 1, \"id\": {i}}}"),
            _ => format!(
                "{{\"url\": \"{}\", \"id\": {i}}}",
                server.url(&format!("/delay/{}", i % 3))
            ),
        };
        if i % 10 > 1 {
            expected.push(i + 1);
        }
        input.push_str(&line);
        input.push('\n');
    }
    for order in [&["--keep-order"][..], &[]] {
        let output = parfetch(&[&["-j", "8", "--quiet"][..], order].concat(), &input);
        assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
        assert_eq!(stderr(&output), "", "--quiet");
        let records = records(&output);
        let mut lines: Vec<u64> = records
            .iter()
            .map(|r| r["line"].as_u64().unwrap())
            .collect();
        if order.is_empty() {
            lines.sort_unstable();
        }
        assert_eq!(lines, expected, "{order:?}");
        for record in &records {
            assert_eq!(
                record["id"],
                record["line"].as_u64().unwrap() - 1,
                "{record}"
            );
            let malformed = (201..=400).contains(&record["line"].as_u64().unwrap());
            assert_eq!(record["ok"], !malformed, "{record}");
        }
    }
}

#[test]
fn an_input_failing_mid_read_exits_three_after_writing_what_was_read() {
    let server = TestServer::start();
    let dir = std::env::temp_dir().join(format!("parfetch-midread-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let urls = dir.join("urls.txt");
    let input: String = (0..20).map(|i| server.url(&format!("/a/{i}\n"))).collect();
    std::fs::write(&urls, input).unwrap();
    // A directory opens as a file does, and fails at its first read.
    let output = parfetch(&[urls.to_str().unwrap(), dir.to_str().unwrap()], "");
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    assert_eq!(records(&output).len(), 20);
    assert!(
        stderr(&output).contains("parfetch: reading "),
        "{}",
        stderr(&output)
    );
    assert_eq!(server.stats().requests(), 20);
}

#[test]
fn an_output_that_fails_exits_three_with_the_reason() {
    let server = TestServer::start();
    let input: String = (0..50)
        .map(|i| server.url(&format!("/bytes/300?i={i}\n")))
        .collect();
    let output = parfetch(&["-o", "/dev/full"], &input);
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("parfetch: writing results: No space left on device"),
        "{}",
        stderr(&output)
    );
}

/// `--summary-json` counts what the run saw; `--quiet` leaves standard error empty.
#[test]
fn the_summary_as_json_counts_lines_outcomes_and_latency() {
    let server = TestServer::start();
    let dir = std::env::temp_dir().join(format!("parfetch-summary-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("summary.json");
    let input = format!(
        "# two kinds of status\n{}\n{}\n{}\n\nnot a url\n{}\n",
        server.url("/delay/30"),
        server.url("/status/404"),
        server.url("/status/404"),
        refused_url()
    );
    let output = parfetch(&["--summary-json", path.to_str().unwrap(), "-q"], &input);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(stderr(&output), "");
    let summary: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(summary["lines"], 7);
    assert_eq!(summary["blank_or_comment"], 2);
    assert_eq!(summary["malformed"], 1);
    assert_eq!(summary["responses"], 3);
    assert_eq!(
        summary["responses_by_status"],
        serde_json::json!({"200": 1, "404": 2})
    );
    assert_eq!(
        summary["exceptions_by_kind"],
        serde_json::json!({"connect": 1})
    );
    assert_eq!(summary["exit_code"], 1);
    let latency = &summary["latency_ms"];
    let max = latency["max"].as_f64().unwrap();
    assert!(max >= 30.0, "{latency}");
    assert!(latency["p50"].as_f64().unwrap() <= latency["p90"].as_f64().unwrap());
    assert!(latency["p99"].as_f64().unwrap() <= max);
    assert!(summary["wall_seconds"].as_f64().unwrap() >= 0.03);

    let output = parfetch(&["--summary-json", "/no/such/dir/s.json"], "");
    assert_eq!(
        output.status.code(),
        Some(2),
        "cannot be written: a usage error"
    );
}

/// Requests sent that never reached the output: in flight, waiting for a host slot or for
/// the writer (the engine takes at most twice the concurrency), and the writer's channel (the
/// concurrency). Records for a pipe are not buffered.
fn resend_bound(concurrency: usize) -> usize {
    3 * concurrency + 1
}

/// `parfetch ... | head -1`: the run stops sending at once and ends without a word, long before
/// the remaining requests to a slow server would have.
#[test]
fn a_closed_stdout_stops_the_run_promptly_and_quietly() {
    use std::io::BufRead;
    let server = TestServer::start();
    let input: String = (0..400)
        .map(|i| server.url(&format!("/delay/200?i={i}\n")))
        .collect();
    let started = std::time::Instant::now();
    let mut child = spawn_with_input(&["-j", "4"], input);
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert!(first.contains("\"ok\":true"), "{first}");
    // The reader is gone; 400 requests at 4 at a time would take 20 s.
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "still running"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(3));
    assert_eq!(err, "", "quietly");
    std::thread::sleep(std::time::Duration::from_millis(300));
    let sent = server.stats().requests();
    println!(
        "closed stdout after 1 record: {sent} requests sent, in {:?}",
        started.elapsed()
    );
    assert!(
        sent <= 1 + resend_bound(4),
        "{sent} requests sent for 1 record read"
    );
}

/// A command killed after some records (a Spark task killed mid-partition) has sent only a
/// bounded number of requests beyond what it wrote: those are what a retry sends again.
#[test]
fn requests_sent_ahead_of_the_output_are_bounded_by_the_concurrency() {
    use std::io::BufRead;
    for (args, window) in [
        (&["-j", "8"][..], 0),
        (&["-j", "8", "--keep-order"], 8 * 256),
    ] {
        let server = TestServer::start();
        let input: String = (0..20_000)
            .map(|i| server.url(&format!("/bytes/20?i={i}\n")))
            .collect();
        let mut child = spawn_with_input(args, input);
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut delivered = 0;
        let mut line = String::new();
        while delivered < 3_000 && stdout.read_line(&mut line).unwrap() > 0 {
            delivered += 1;
        }
        child.kill().unwrap();
        // What it wrote before it died still counts as delivered.
        while stdout.read_line(&mut line).unwrap() > 0 {
            delivered += 1;
        }
        child.wait().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(300));
        let sent = server.stats().requests();
        println!(
            "{args:?}: killed after {delivered} records, {sent} requests sent: {} ahead",
            sent - delivered
        );
        assert!(delivered < 20_000, "killed too late to tell");
        assert!(
            sent <= delivered + resend_bound(8) + window,
            "{sent} sent for {delivered} records written ({args:?})"
        );
    }
}
