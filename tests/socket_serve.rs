//! An ordinary UDP client (std::net) talks to `shake serve --io socket` on loopback and gets
//! every outcome; every answer is checked as a careful client would.

mod common;

use std::collections::HashSet;
use std::net::UdpSocket;
use std::time::{Duration, Instant};

use common::{unix_s, NodeDir, Server, CLAIM_KEY, TOKEN_KEY};
use shake::client;
use shake::wire::shake::{Outcome, ShakeAnswerRepr, ShakeRequestRepr};

fn client_socket() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

fn ask(s: &UdpSocket, server: std::net::SocketAddr, r: &ShakeRequestRepr) -> ShakeAnswerRepr {
    s.send_to(&client::payload(r), server).unwrap();
    let mut buf = [0u8; 128];
    let (n, from) = s.recv_from(&mut buf).expect("an answer");
    assert_eq!(
        from, server,
        "answer comes from the address the request went to"
    );
    assert_eq!(n, 64, "answers are exactly 64 bytes");
    client::check_answer(r, &buf[..n], &CLAIM_KEY).unwrap()
}

fn expiry() -> u32 {
    (unix_s() + 3600) as u32
}

#[test]
fn every_outcome_over_kernel_sockets() {
    // A round that began at start and lasts an hour; two nodes, we are node 0.
    let node = NodeDir::new(
        unix_s(),
        "[[round]]\nid = 1\nstart_s = 0\nduration_s = 3600\nwin_probability = 0.4\ngreeting_probability = 0.3\n",
        2,
        "[blacklist]\nusers = [1000000]\n",
    );
    let server = Server::start_socket(&node.config(), 2);
    let s = client_socket();
    let mut seen: HashSet<Outcome> = HashSet::new();
    let mut packets = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    // Even users belong to node 0; each shakes once. Bounded in count and time.
    let mut user = 0u64;
    while user < 40_000 && Instant::now() < deadline {
        user += 2;
        let a = ask(
            &s,
            server.udp,
            &client::request(&TOKEN_KEY, user, 1, expiry(), user),
        );
        if a.outcome == Outcome::RedPacket {
            assert!(packets.insert(a.packet_id), "packet issued twice");
        }
        seen.insert(a.outcome);
        if [Outcome::RedPacket, Outcome::Greeting, Outcome::Nothing]
            .iter()
            .all(|o| seen.contains(o))
        {
            break;
        }
    }
    assert!(
        seen.contains(&Outcome::RedPacket),
        "{seen:?} after {user} users"
    );
    assert!(seen.contains(&Outcome::Greeting));
    assert!(seen.contains(&Outcome::Nothing));

    // The same user again, at once: throttled, with the time left.
    let a = ask(
        &s,
        server.udp,
        &client::request(&TOKEN_KEY, 2, 2, expiry(), 0),
    );
    assert_eq!(a.outcome, Outcome::Throttled);
    assert!(a.retry_after_ms > 0 && a.retry_after_ms <= 10_000);

    // A user of node 1.
    let a = ask(
        &s,
        server.udp,
        &client::request(&TOKEN_KEY, 7, 1, expiry(), 0),
    );
    assert_eq!((a.outcome, a.resource_id), (Outcome::Redirect, 1));

    // Wrong token, and an expired one.
    let mut r = client::request(&TOKEN_KEY, 10_000_002, 1, expiry(), 0);
    r.token ^= 0xff;
    assert_eq!(ask(&s, server.udp, &r).outcome, Outcome::Denied);
    let r = client::request(&TOKEN_KEY, 10_000_004, 1, (unix_s() - 10) as u32, 0);
    assert_eq!(ask(&s, server.udp, &r).outcome, Outcome::Denied);

    // Blacklisted: NOTHING, counted.
    let a = ask(
        &s,
        server.udp,
        &client::request(&TOKEN_KEY, 1_000_000, 1, expiry(), 0),
    );
    assert_eq!(a.outcome, Outcome::Nothing);
    assert_eq!(
        server.metric("shake_events_total", "event=\"blacklisted\""),
        1
    );

    // Garbage gets no answer but a counted drop; the server keeps serving.
    let mut bad = client::payload(&client::request(&TOKEN_KEY, 10_000_006, 1, expiry(), 0));
    bad[0] = b'X';
    s.send_to(&bad, server.udp).unwrap();
    s.send_to(&[1, 2, 3], server.udp).unwrap();
    let a = ask(
        &s,
        server.udp,
        &client::request(&TOKEN_KEY, 10_000_008, 1, expiry(), 0),
    );
    assert_ne!(a.outcome, Outcome::Denied);
    assert_eq!(server.metric("shake_drops_total", "reason=\"magic\""), 1);
    assert_eq!(
        server.metric("shake_drops_total", "reason=\"payload_length\""),
        1
    );

    let (status, rest) = server.stop();
    assert!(status.success(), "clean stop on SIGTERM: {status:?}");
    assert!(rest.contains("shake: stopped."), "{rest}");
}

#[test]
fn closed_outside_rounds_says_when_to_return() {
    let node = NodeDir::new(
        unix_s(),
        "[[round]]\nid = 5\nstart_s = 30\nduration_s = 60\nwin_probability = 1.0\n",
        1,
        "",
    );
    let server = Server::start_socket(&node.config(), 1);
    let s = client_socket();
    let a = ask(
        &s,
        server.udp,
        &client::request(&TOKEN_KEY, 3, 1, expiry(), 42),
    );
    assert_eq!(a.outcome, Outcome::Closed);
    assert_eq!(a.round_id, 5);
    assert!(
        a.retry_after_ms > 20_000 && a.retry_after_ms <= 30_000,
        "{}",
        a.retry_after_ms
    );
    assert_eq!(a.client_ts, 42);
}

#[test]
fn sighup_reloads_while_serving_and_refuses_a_bad_config() {
    let node = NodeDir::new(
        unix_s(),
        "[[round]]\nid = 1\nstart_s = 0\nduration_s = 3600\nwin_probability = 0.0\ngreeting_probability = 1.0\n",
        1,
        "",
    );
    let server = Server::start_socket(&node.config(), 1);
    let s = client_socket();
    let first = ask(
        &s,
        server.udp,
        &client::request(&TOKEN_KEY, 1, 1, expiry(), 0),
    );
    assert_eq!(first.outcome, Outcome::Greeting);
    let v1 = first.config_version;

    // Blacklist user 2, then SIGHUP: answers carry a newer config_version and user 2 gets
    // NOTHING. Poll with new users until the reload shows (bounded).
    let config = std::fs::read_to_string(node.config()).unwrap();
    std::fs::write(
        node.config(),
        format!("{config}\n[blacklist]\nusers = [2]\n"),
    )
    .unwrap();
    server.signal(1);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut user = 100u64;
    let v2 = loop {
        user += 1;
        let a = ask(
            &s,
            server.udp,
            &client::request(&TOKEN_KEY, user, 1, expiry(), 0),
        );
        if a.config_version > v1 {
            break a.config_version;
        }
        assert!(Instant::now() < deadline, "no reload within 10 s");
    };
    let a = ask(
        &s,
        server.udp,
        &client::request(&TOKEN_KEY, 2, 1, expiry(), 0),
    );
    assert_eq!((a.outcome, a.config_version), (Outcome::Nothing, v2));
    assert_eq!(
        server.metric("shake_events_total", "event=\"blacklisted\""),
        1
    );

    // A reload that drops a sponsor is refused: the node keeps serving the previous config.
    let activity = node.path().join("activity.toml");
    let text = std::fs::read_to_string(&activity).unwrap();
    let cut = text.find("[[sponsor]]\nid = 102").expect("second sponsor");
    let end = text[cut..].find("\n\n").map_or(text.len(), |e| cut + e);
    std::fs::write(&activity, format!("{}{}", &text[..cut], &text[end..])).unwrap();
    server.signal(1);
    // The refusal is counted (bounded wait); answers keep carrying v2.
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.metric("shake_reloads_total", "result=\"refused\"") == 0 {
        assert!(
            Instant::now() < deadline,
            "the bad reload was neither applied nor refused"
        );
    }
    assert_eq!(
        server.metric("shake_reloads_total", "result=\"applied\""),
        1
    );
    assert_eq!(server.metric("shake_config_version", ""), v2 as u64);
    let a = ask(
        &s,
        server.udp,
        &client::request(&TOKEN_KEY, 10_000, 1, expiry(), 0),
    );
    assert_eq!((a.outcome, a.config_version), (Outcome::Greeting, v2));
    let (status, _) = server.stop();
    assert!(status.success());
}
