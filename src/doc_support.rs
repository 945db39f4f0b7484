//! Loopback servers for the crate's doc examples, so that they run against nothing outside the
//! machine. Hidden, and not part of the API: it may change in any release.

use std::io::{Read, Write};
use std::net::TcpListener;

/// Answers the next `connections` connections to a new loopback port with `200 OK` and the
/// body `ok`, one request each, from a thread of its own. Returns `http://127.0.0.1:PORT`.
pub fn serve(connections: usize) -> String {
    serve_raw(
        connections,
        "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok",
    )
}

/// As [`serve`], answering each request with `response`, a whole HTTP/1.1 response as sent.
pub fn serve_raw(connections: usize, response: &'static str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    let base = format!("http://{}", listener.local_addr().expect("its address"));
    std::thread::spawn(move || {
        for mut stream in listener.incoming().take(connections).flatten() {
            let mut head = [0u8; 4096];
            let _ = stream.read(&mut head);
            let _ = stream.write_all(response.as_bytes());
        }
    });
    base
}
