//! A phone on an ordinary kernel UDP socket, as the veth and AF_XDP tests run it inside a
//! network namespace: every user shakes once, then user 1 again at once (THROTTLED).

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use shake::client::{check_answer, payload, request};
use shake::wire::shake::Outcome;

use super::{unix_s, CLAIM_KEY, TOKEN_KEY};

/// The activity of a node this client shakes at: every user may get a greeting and nobody
/// wins, so every answer is GREETING or NOTHING (what
/// [`shake_every_user_then_repeat`] checks).
pub const ACTIVITY: &str = r#"
[activity]
id = 51
name = "kernel client"
epoch = 0
[[sponsor]]
id = 7
budget_cents = 100000
packets = 1000
greeting_resources = [3]
[[round]]
id = 1
start_s = 0
duration_s = 600
win_probability = 0.0
greeting_probability = 0.5
"#;

/// Shakes for users `1..=users` and then user 1 again from one socket, each answer checked
/// against its request and the claim key; the answers counted by outcome name. Panics (the
/// test fails) on a wrong answer, or on none within 15 s.
pub fn shake_every_user_then_repeat(server: SocketAddr, users: u64) -> BTreeMap<&'static str, u64> {
    let any = if server.is_ipv6() {
        "[::]:0"
    } else {
        "0.0.0.0:0"
    };
    let s = UdpSocket::bind(any).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let expiry = (unix_s() + 3600) as u32;
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut outcomes = BTreeMap::new();
    for (user, seq) in (1..=users).map(|u| (u, 1)).chain([(1, 2)]) {
        let r = request(&TOKEN_KEY, user, seq, expiry, user * 1000 + u64::from(seq));
        let mut buf = [0u8; 256];
        // The first datagram waits for ARP (or NDP); one lost on the way is sent again (its
        // answer may then be THROTTLED), and late answers to earlier users are skipped.
        let mut sends = 0;
        let n = 'answer: loop {
            assert!(
                Instant::now() < deadline,
                "client: no answer for user {user}"
            );
            s.send_to(&payload(&r), server).unwrap();
            sends += 1;
            loop {
                match s.recv_from(&mut buf) {
                    Ok((n, from)) => {
                        assert_eq!(from, server, "answer from the node's address and port");
                        if n >= 20
                            && buf[8..16] == user.to_be_bytes()
                            && buf[16..20] == seq.to_be_bytes()
                        {
                            break 'answer n;
                        }
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) =>
                    {
                        continue 'answer
                    }
                    Err(e) => panic!("client: recv: {e}"),
                }
            }
        };
        assert_eq!(n, 64, "answer payload length");
        assert_eq!(&buf[..4], b"SK\x01\x81");
        let a = check_answer(&r, &buf[..n], &CLAIM_KEY).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(a.outcome as u8, buf[4]);
        let repeat = seq == 2;
        if sends == 1 {
            assert_eq!(
                a.outcome == Outcome::Throttled,
                repeat,
                "user {user} seq {seq}: {a:?}"
            );
        }
        if !repeat && a.outcome != Outcome::Throttled {
            assert!(
                matches!(a.outcome, Outcome::Greeting | Outcome::Nothing),
                "{a:?}"
            );
        }
        *outcomes.entry(a.outcome.name()).or_insert(0u64) += 1;
    }
    outcomes
}
