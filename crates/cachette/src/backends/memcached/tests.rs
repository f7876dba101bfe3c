//! The codec and the key encoding against a real `memcached` started by
//! the test: what [`proto`](super::proto) writes, the server takes, and
//! what the server answers, the parser reads.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use bytes::BytesMut;

use super::keys::ServerKey;
use super::proto::{self, Meta, Response, Status};
use crate::testing::servers::memcached::MemcachedServer;

/// Sends `request` and reads until `count` responses are parsed.
fn exchange(stream: &mut TcpStream, request: &[u8], count: usize) -> Vec<Response> {
    stream.write_all(request).unwrap();
    let mut buffer = BytesMut::new();
    let mut responses = Vec::new();
    let mut chunk = [0_u8; 4096];
    while responses.len() < count {
        while let Some(response) = proto::parse(&mut buffer, 1 << 20).unwrap() {
            responses.push(response);
        }
        if responses.len() >= count {
            break;
        }
        let read = stream.read(&mut chunk).unwrap();
        assert!(read > 0, "the server closed the connection");
        buffer.extend_from_slice(&chunk[..read]);
    }
    assert!(buffer.is_empty(), "{buffer:?} left over");
    responses
}

fn meta(response: &Response) -> &Meta {
    match response {
        Response::Meta(meta) => meta,
        Response::Error(line) => panic!("the server answered {line}"),
    }
}

fn connect(server: &MemcachedServer) -> TcpStream {
    let stream = TcpStream::connect(server.address()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
}

#[test]
fn every_kind_of_key_round_trips_through_a_real_server() {
    let server = MemcachedServer::start();
    let mut stream = connect(&server);
    let long = "y ".repeat(3_000);
    let users = [
        "plain",
        "with space",
        "tab\tnew\r\nline",
        "é",
        &"x".repeat(240),
        &long,
    ];
    let keys: Vec<ServerKey> = users.iter().map(|k| ServerKey::new("ns0:", k)).collect();
    let mut request = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        proto::meta_set(
            &mut request,
            key.wire(),
            format!("value {i}").as_bytes(),
            "T0",
        );
    }
    for key in &keys {
        proto::meta_get(&mut request, key.wire(), "v t");
    }
    let responses = exchange(&mut stream, &request, 2 * keys.len());
    for (i, response) in responses.iter().enumerate() {
        let meta = meta(response);
        if i < keys.len() {
            assert_eq!(meta.status, Some(Status::Done), "set of {:?}", users[i]);
        } else {
            let i = i - keys.len();
            assert_eq!(meta.status, Some(Status::Value), "get of {:?}", users[i]);
            assert_eq!(meta.value.as_deref(), Some(format!("value {i}").as_bytes()));
            assert_eq!(meta.ttl, Some(-1), "no expiry");
        }
    }
    assert_eq!(server.stat("curr_items"), keys.len() as u64);
}

#[test]
fn a_quiet_batch_answers_only_its_hits_then_mn() {
    let server = MemcachedServer::start();
    let mut stream = connect(&server);
    let mut request = Vec::new();
    proto::meta_set(&mut request, ServerKey::new("", "b").wire(), b"2", "T60");
    let _ = exchange(&mut stream, &request, 1);
    let mut batch = Vec::new();
    for (i, key) in ["a", "b", "c"].iter().enumerate() {
        proto::meta_get(
            &mut batch,
            ServerKey::new("", key).wire(),
            &format!("v t q O{i}"),
        );
    }
    proto::meta_noop(&mut batch);
    let responses = exchange(&mut stream, &batch, 2);
    let hit = meta(&responses[0]);
    assert_eq!(
        (hit.opaque, hit.value.as_deref()),
        (Some(1), Some(&b"2"[..]))
    );
    assert!(matches!(hit.ttl, Some(59 | 60)), "{hit:?}");
    assert_eq!(meta(&responses[1]).status, Some(Status::Noop));
}

#[test]
fn conditional_sets_and_cas_answer_as_the_parser_expects() {
    let server = MemcachedServer::start();
    let mut stream = connect(&server);
    let key = ServerKey::new("", "c");
    let mut request = Vec::new();
    proto::meta_set(&mut request, key.wire(), b"1", "ME c");
    proto::meta_set(&mut request, key.wire(), b"2", "ME");
    proto::meta_get(&mut request, key.wire(), "v c");
    let responses = exchange(&mut stream, &request, 3);
    assert_eq!(meta(&responses[0]).status, Some(Status::Done));
    assert_eq!(meta(&responses[1]).status, Some(Status::NotStored));
    let cas = meta(&responses[2]).cas.expect("a CAS value");
    assert_eq!(meta(&responses[0]).cas, Some(cas));
    let mut request = Vec::new();
    proto::meta_set(&mut request, key.wire(), b"3", &format!("C{}", cas + 1));
    proto::meta_set(&mut request, key.wire(), b"3", &format!("C{cas}"));
    proto::meta_arithmetic(&mut request, key.wire(), "D5 v");
    proto::meta_delete(&mut request, ServerKey::new("", "none").wire(), "");
    let responses = exchange(&mut stream, &request, 4);
    assert_eq!(meta(&responses[0]).status, Some(Status::Exists));
    assert_eq!(meta(&responses[1]).status, Some(Status::Done));
    assert_eq!(meta(&responses[2]).value.as_deref(), Some(&b"8"[..]));
    assert_eq!(meta(&responses[3]).status, Some(Status::NotFound));
}

#[test]
fn a_vivified_miss_hands_out_one_win() {
    let server = MemcachedServer::start();
    let mut stream = connect(&server);
    let key = ServerKey::new("", "lease");
    let mut request = Vec::new();
    proto::meta_get(&mut request, key.wire(), "v N30 t");
    proto::meta_get(&mut request, key.wire(), "v N30 t");
    let responses = exchange(&mut stream, &request, 2);
    let (first, second) = (meta(&responses[0]), meta(&responses[1]));
    assert!(first.won && !first.already_won, "{first:?}");
    assert!(!second.won && second.already_won, "{second:?}");
    assert_eq!(first.value.as_deref(), Some(&b""[..]));
}

#[test]
fn errors_are_parsed_as_error_lines() {
    let server = MemcachedServer::start();
    let mut stream = connect(&server);
    let key = ServerKey::new("", "text");
    let mut request = Vec::new();
    proto::meta_set(&mut request, key.wire(), b"abc", "");
    proto::meta_arithmetic(&mut request, key.wire(), "v");
    let responses = exchange(&mut stream, &request, 2);
    assert_eq!(meta(&responses[0]).status, Some(Status::Done));
    assert!(
        matches!(&responses[1], Response::Error(line) if line.starts_with("CLIENT_ERROR")),
        "{:?}",
        responses[1]
    );
}
