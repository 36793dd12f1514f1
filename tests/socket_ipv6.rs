//! The socket backend serves IPv6 beside IPv4 (issue 12): `shake serve --io socket` with
//! `node.ipv6` set (a documentation address: the node's global one, which this host does not
//! have) and `--bind6 [::1]:0`, so everything stays on loopback.
//!
//! - SHAKE/1 over IPv6 is answered from the address asked, every answer validated, users of
//!   both workers (about half handed from one worker to the other with their IPv6 source);
//!   sources that must never get an answer (the unspecified address, IPv4-mapped, UDP port
//!   0) are dropped as `source`, sent with a raw IPv6 socket (CAP_NET_RAW, as the IPv4
//!   counters test); every datagram counted once.
//! - A user is one user over both families: throttled over IPv6 right after a shake over
//!   IPv4 (and the other way round); within the per-user and per-sponsor limits over both
//!   together; each red packet journaled once whichever family it was won over, and
//!   `shake reconcile` balances.

mod common;

use std::collections::{HashMap, HashSet};
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::{audit_journals, reconcile, seedgen, unix_s, NodeDir, NodeToml, Server};
use common::{CLAIM_KEY, TOKEN_KEY};
use shake::client::{check_answer, payload, request};
use shake::engine::config::owner_worker;
use shake::wire::shake::{Outcome, ShakeAnswerRepr, ShakeRequestRepr};

/// The node's IPv6 address in its config: a documentation address, never bound here.
const NODE_IPV6: &str = "2001:db8::1";

fn client(addr: &str) -> UdpSocket {
    let s = UdpSocket::bind(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

/// Sends `r` from `s` to `server` and checks the answer as a careful client would: from the
/// address asked, 64 bytes, valid for the request.
fn ask(s: &UdpSocket, server: SocketAddr, r: &ShakeRequestRepr) -> ShakeAnswerRepr {
    s.send_to(&payload(r), server).unwrap();
    let mut buf = [0u8; 128];
    let (n, from) = s
        .recv_from(&mut buf)
        .unwrap_or_else(|e| panic!("no answer from {server} for user {}: {e}", r.user_id));
    assert_eq!(from, server, "the answer comes from the address asked");
    assert_eq!(n, 64, "answers are exactly 64 bytes");
    check_answer(r, &buf[..n], &CLAIM_KEY).unwrap_or_else(|e| panic!("user {}: {e}", r.user_id))
}

fn expiry() -> u32 {
    (unix_s() + 3600) as u32
}

/// The totals line `shake serve` prints when it stops, as a map.
fn totals(rest: &str) -> HashMap<String, u64> {
    let line = rest
        .lines()
        .find_map(|l| l.strip_prefix("shake: stopped. totals "))
        .unwrap_or_else(|| panic!("no totals line in:\n{rest}"));
    line.split_whitespace()
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            Some((k.to_owned(), v.parse().ok()?))
        })
        .collect()
}

/// A whole IPv6/UDP packet from `src` to `dst` (for a raw IPPROTO_RAW socket, which sends
/// the IPv6 header as given).
fn datagram6(src: SocketAddr, dst: SocketAddr, data: &[u8]) -> Vec<u8> {
    let (SocketAddr::V6(s), SocketAddr::V6(d)) = (src, dst) else {
        panic!("{src} {dst}")
    };
    let b = etherparse::PacketBuilder::ipv6(s.ip().octets(), d.ip().octets(), 64)
        .udp(s.port(), d.port());
    let mut out = Vec::with_capacity(b.size(data.len()));
    b.write(&mut out, data).unwrap();
    out
}

/// `[socket] bind6` on loopback: nothing defaults to the documentation address, which is
/// off this host (the nodes are given `--bind6 [::1]:0` too).
const BIND6: &str = "\n[socket]\nbind6 = \"[::1]:0\"\n";

/// A socket node with `node.ipv6` (node 0 of one, metrics on, `[[round]]`s `rounds`).
fn node_v6(rounds: &str) -> NodeDir {
    let node = NodeDir::new(unix_s(), rounds, 1, BIND6);
    let path = node.config();
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, with_ipv6(&text)).unwrap();
    node
}

/// A node config's text with `node.ipv6` added.
fn with_ipv6(config: &str) -> String {
    let ipv4 = "ipv4 = \"127.0.0.1\"";
    assert!(config.contains(ipv4), "{config}");
    config.replacen(ipv4, &format!("{ipv4}\nipv6 = \"{NODE_IPV6}\""), 1)
}

#[test]
fn shake_over_ipv6_is_answered_and_bad_sources_are_dropped() {
    let node = node_v6(
        "[[round]]\nid = 1\nstart_s = 0\nduration_s = 3600\nwin_probability = 0.3\ngreeting_probability = 0.3\n",
    );
    let server = Server::start_socket6(&node.config(), 2);
    let udp6 = server.udp6.unwrap();
    assert!(
        udp6.is_ipv6() && server.udp.is_ipv4(),
        "{} {udp6}",
        server.udp
    );
    let s = client("[::1]:0");
    let raw = socket2::Socket::new(
        socket2::Domain::IPV6,
        socket2::Type::RAW,
        Some(socket2::Protocol::from(libc::IPPROTO_RAW)),
    )
    .unwrap_or_else(|e| panic!("this test needs a raw socket (CAP_NET_RAW): {e}"));

    // Sources that must never get an answer, each with a valid shake. (A multicast source
    // never reaches a socket: the kernel drops it, RFC 4291 2.7; the unit test covers it.)
    let bad_sources: [SocketAddr; 3] = [
        "[::]:4000".parse().unwrap(),
        "[::ffff:10.0.0.1]:4000".parse().unwrap(),
        "[::1]:0".parse().unwrap(),
    ];
    // A raw IPv6 socket takes the next header from the address's port: 0, as given.
    let raw_to = SocketAddr::new(udp6.ip(), 0);
    for (i, src) in bad_sources.iter().enumerate() {
        let r = request(&TOKEN_KEY, 1_000_000 + i as u64, 1, expiry(), 0);
        raw.send_to(&datagram6(*src, udp6, &payload(&r)), &raw_to.into())
            .unwrap_or_else(|e| panic!("raw send from {src}: {e}"));
    }

    // Users of both workers, one at a time; every answer valid and from [::1]:PORT.
    let mut seen = HashSet::new();
    let mut handed_over = 0;
    let users = 200u64;
    for user in 1..=users {
        let a = ask(&s, udp6, &request(&TOKEN_KEY, user, 1, expiry(), user));
        assert_eq!((a.user_id, a.client_ts), (user, user));
        seen.insert(a.outcome);
        if owner_worker(user, 1, 2) != owner_worker(1, 1, 2) {
            handed_over += 1;
        }
    }
    assert!(
        handed_over > users / 4 && handed_over < 3 * users / 4,
        "{handed_over} of {users} users belong to the other worker"
    );
    for o in [Outcome::RedPacket, Outcome::Greeting, Outcome::Nothing] {
        assert!(seen.contains(&o), "no {o:?} over IPv6: {seen:?}");
    }
    // IPv4 still served beside it.
    let v4 = client("127.0.0.1:0");
    let a = ask(&v4, server.udp, &request(&TOKEN_KEY, 5_000, 1, expiry(), 0));
    assert_ne!(a.outcome, Outcome::Denied);

    let sent = users + 1 + bad_sources.len() as u64;
    let wait = Instant::now() + Duration::from_secs(10);
    while server.metric("shake_rx_frames_total", "") < sent && Instant::now() < wait {
        std::thread::sleep(Duration::from_millis(20));
    }
    // Nothing else arrives here (an answer to a bad source would not, but a stray one would).
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    assert!(
        s.recv_from(&mut [0u8; 128]).is_err(),
        "an unexpected datagram"
    );
    let (status, rest) = server.stop();
    assert!(status.success(), "{status:?}");
    let t = totals(&rest);
    let get = |k: &str| t.get(k).copied().unwrap_or(0);
    assert_eq!(get("rx"), sent, "each datagram counted once: {t:?}");
    assert_eq!(get("answered"), users + 1, "{t:?}");
    assert_eq!(get("rx"), get("tx") + get("dropped"), "{t:?}");
    assert_eq!(get("drop.source"), bad_sources.len() as u64, "{t:?}");
    assert_eq!(get("dropped"), bad_sources.len() as u64, "{t:?}");
}

#[test]
fn a_user_throttled_over_one_family_is_throttled_over_the_other() {
    // The default throttle: seconds between shakes.
    let node = node_v6(
        "[[round]]\nid = 1\nstart_s = 0\nduration_s = 3600\nwin_probability = 0.0\ngreeting_probability = 0.5\n",
    );
    let server = Server::start_socket6(&node.config(), 2);
    let (v4, v6) = (client("127.0.0.1:0"), client("[::1]:0"));
    let udp6 = server.udp6.unwrap();
    for user in 1..=20u64 {
        // Even users start over IPv4, odd ones over IPv6; then at once over the other.
        let (first, then) = if user % 2 == 0 {
            ((&v4, server.udp), (&v6, udp6))
        } else {
            ((&v6, udp6), (&v4, server.udp))
        };
        let a = ask(first.0, first.1, &request(&TOKEN_KEY, user, 1, expiry(), 0));
        assert!(
            matches!(a.outcome, Outcome::Nothing | Outcome::Greeting),
            "user {user}: {a:?}"
        );
        let b = ask(then.0, then.1, &request(&TOKEN_KEY, user, 2, expiry(), 0));
        assert_eq!(
            b.outcome,
            Outcome::Throttled,
            "user {user} over the other family"
        );
        assert!(b.retry_after_ms > 0 && b.retry_after_ms <= 10_000, "{b:?}");
    }
    let (status, _) = server.stop();
    assert!(status.success());
}

#[test]
fn a_user_over_both_families_is_one_user_for_limits_journal_and_reconcile() {
    // Three sponsors, at most two packets a user and one per sponsor: a user seen as two
    // (one per family) could win three. Every shake wins while pacing and the limits allow;
    // pacing spreads a worker's packets over the minute the round has left, hundreds a
    // second, far more than the test asks for.
    let node = NodeDir::with_activity(&format!(
        r#"
[activity]
id = 43
name = "dual stack"
epoch = {}
[limits]
per_user = 2
per_sponsor = 1
[[sponsor]]
id = 1
budget_cents = 3000000
packets = 30000
[[sponsor]]
id = 2
budget_cents = 3000000
packets = 30000
[[sponsor]]
id = 3
budget_cents = 3000000
packets = 30000
[[round]]
id = 1
start_s = 0
duration_s = 4000
win_probability = 1.0
"#,
        unix_s() - 3940
    ));
    let p = node.path();
    let text = NodeToml::new("127.0.0.1", 10_000)
        .port(0)
        .activity(r#"seeds = "seeds""#)
        .activity(r#"journal = "journal""#)
        .extra("[throttle]\nfloor_ms = 1\nceiling_ms = 2\n")
        .extra(BIND6)
        .text();
    let config = p.join("node.toml");
    std::fs::write(&config, with_ipv6(&text)).unwrap();
    seedgen(p, 2, 7);
    let server = Server::start_socket_args(&config, None, &["--bind6", "[::1]:0"]);
    let udp6 = server.udp6.expect("serves IPv6");
    let (v4, v6) = (client("127.0.0.1:0"), client("[::1]:0"));

    // Every user shakes over both families in turn, IPv4 first for even users and IPv6
    // first for odd ones; a pass over all users between two shakes of one outlasts the
    // 2 ms ceiling, and a THROTTLED answer would only cost a try.
    let users = 60u64;
    let mut wins: HashMap<u64, Vec<(bool, u32)>> = HashMap::new();
    let mut paid = HashMap::new();
    let mut seq = 0u32;
    for pass in 0..6u64 {
        for user in 1..=users {
            seq += 1;
            let ipv6 = (user + pass) % 2 == 1;
            let (s, to) = if ipv6 { (&v6, udp6) } else { (&v4, server.udp) };
            let a = ask(s, to, &request(&TOKEN_KEY, user, seq, expiry(), 0));
            if a.outcome == Outcome::RedPacket {
                wins.entry(user).or_default().push((ipv6, a.sponsor_id));
                let before = paid.insert(a.packet_id, (user, a.amount_cents, a.sponsor_id));
                assert!(before.is_none(), "packet {} answered twice", a.packet_id);
            }
        }
    }
    let (status, _) = server.stop();
    assert!(status.success());

    // Within the limits over both families together.
    for (user, w) in &wins {
        assert!(w.len() <= 2, "user {user} won {} packets: {w:?}", w.len());
        let sponsors: HashSet<_> = w.iter().map(|(_, s)| s).collect();
        assert_eq!(sponsors.len(), w.len(), "user {user}: {w:?}");
    }
    // They reached them, over both families: most users won one packet over each.
    let full = wins.values().filter(|w| w.len() == 2).count();
    let both = wins
        .values()
        .filter(|w| w.iter().any(|(v6, _)| *v6) && w.iter().any(|(v6, _)| !*v6))
        .count();
    assert!(
        full as u64 > users / 2 && both as u64 > users / 2,
        "{full} users at the limit, {both} won over both families, of {users}: {wins:?}"
    );

    // The journal has each packet once, as answered, whichever family; reconcile balances.
    let journaled = audit_journals(&p.join("journal"), 2);
    journaled.assert_journaled(&paid);
    assert_eq!(
        journaled.claims.len(),
        paid.len(),
        "every claim answered once"
    );
    reconcile(p);
}
