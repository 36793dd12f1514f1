//! The money test: `shake serve --io socket` over memory-mapped shards and claim journals,
//! under load from a client that ignores retry_after, is killed with SIGKILL at random
//! moments 20 times and restarted each time. Afterwards no packet_id is in the journals twice,
//! no user has more than 3 packets or more than 1 from one sponsor, every RED_PACKET
//! answer the client received is in a journal with the same user, amount and sponsor, and
//! `shake reconcile` is exact.

mod common;

use std::collections::HashMap;
use std::net::UdpSocket;
use std::time::{Duration, Instant};

use common::{reconcile, seedgen, unix_s, NodeDir, NodeToml, Server, CLAIM_KEY, TOKEN_KEY};
use shake::client;
use shake::wire::shake::Outcome;

const USERS: u64 = 3_000;
const KILLS: usize = 20;

/// Received RED_PACKET answers: packet_id -> (user, amount, sponsor).
type Paid = HashMap<u64, (u64, u32, u32)>;

/// Floods the server with shakes of all users (ignoring retry_after, as a stress client
/// does) until `answers` answers arrived or the server stopped answering.
fn load(server: &Server, answers: usize, seq: &mut u32, paid: &mut Paid) -> usize {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let expiry = (unix_s() + 3600) as u32;
    let mut got = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut sent: HashMap<(u64, u32), shake::wire::shake::ShakeRequestRepr> = HashMap::new();
    'outer: while got < answers && Instant::now() < deadline {
        for _ in 0..64 {
            *seq += 1;
            let user = (*seq as u64 * 7919) % USERS;
            let r = client::request(&TOKEN_KEY, user, *seq, expiry, 0);
            sent.insert((user, *seq), r);
            s.send_to(&client::payload(&r), server.udp).unwrap();
        }
        let mut buf = [0u8; 128];
        for _ in 0..64 {
            let Ok((n, _)) = s.recv_from(&mut buf) else {
                continue 'outer;
            };
            let user = u64::from_be_bytes(buf[8..16].try_into().unwrap());
            let sq = u32::from_be_bytes(buf[16..20].try_into().unwrap());
            let r = sent
                .remove(&(user, sq))
                .expect("answer to a request we sent");
            let a = client::check_answer(&r, &buf[..n], &CLAIM_KEY).unwrap();
            if a.outcome == Outcome::RedPacket {
                assert!(
                    paid.insert(a.packet_id, (a.user_id, a.amount_cents, a.sponsor_id))
                        .is_none(),
                    "packet {} answered twice",
                    a.packet_id
                );
            }
            got += 1;
        }
    }
    got
}

#[test]
fn sigkill_twenty_times_loses_and_duplicates_nothing() {
    // Four back-to-back rounds of 30 s from now: packets are due at 100 a second.
    let mut rounds = String::new();
    for i in 0..4 {
        rounds += &format!(
            "[[round]]\nid = {}\nstart_s = {}\nduration_s = 30\nwin_probability = 0.5\ngreeting_probability = 0.2\n",
            i + 1,
            i * 30
        );
    }
    let node = NodeDir::with_activity(&format!(
        r#"
[activity]
id = 31
name = "crash"
epoch = {}
[limits]
per_user = 3
per_sponsor = 1
[[sponsor]]
id = 1
budget_cents = 600000
packets = 6000
min_cents = 10
max_cents = 500
[[sponsor]]
id = 2
budget_cents = 300000
packets = 6000
min_cents = 5
max_cents = 100
{rounds}
"#,
        unix_s()
    ));
    let p = node.path();
    let config = NodeToml::new("127.0.0.1", 100_000)
        .port(0)
        .activity(r#"seeds = "seeds""#)
        .activity(r#"journal = "journal""#)
        .extra("[throttle]\nfloor_ms = 1\nceiling_ms = 2\n")
        .write(p);
    seedgen(p, 2, 5);

    let mut rng = shake::rng::Rng::new(77);
    let mut paid = Paid::new();
    let mut seq = 0u32;
    for _ in 0..KILLS {
        let mut server = Server::start_socket_with(&config, None);
        // Kill at a random point of the load, with requests in flight.
        let n = 200 + rng.below(3_000) as usize;
        load(&server, n, &mut seq, &mut paid);
        server.child.kill().unwrap(); // SIGKILL
        server.child.wait().unwrap();
    }
    // One more start: recovery after the last kill, then a clean stop.
    let server = Server::start_socket_with(&config, None);
    load(&server, 500, &mut seq, &mut paid);
    let (status, _) = server.stop();
    assert!(status.success());
    assert!(
        paid.len() > 100,
        "only {} red packets were paid",
        paid.len()
    );

    // Every journal record, all workers: no packet twice, limits hold.
    let journaled = common::audit_journals(&p.join("journal"), 2);
    journaled.assert_journaled(&paid);
    let claims = &journaled.claims;
    eprintln!(
        "{} red packets answered, {} claims journaled, {} users won",
        paid.len(),
        claims.len(),
        journaled.winners
    );
    // Same boot, so SIGKILL forfeits nothing: the page cache kept every record.
    assert_eq!(journaled.forfeits, 0);

    reconcile(p);
}
