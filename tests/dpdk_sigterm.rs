//! SIGTERM under load: the DPDK appliance (`shake serve --io dpdk`) over memory-mapped
//! shards from `shake seedgen` and a claim journal, driven over net_memif by this test
//! process (a DPDK client, see tests/common/memif.rs) with shakes of 3000 users that come
//! back as soon as the 1 ms throttle allows. Once a hundred red packets came back, the
//! appliance gets SIGTERM while the client keeps sending. It must exit 0; afterwards every
//! RED_PACKET answer the client saw is in the journal with the same user, amount and sponsor,
//! no packet is journaled twice, the per-user and per-sponsor limits hold, and
//! `shake reconcile` is exact.
//!
//! `--no-pci --no-huge --no-shconf`, a `--file-prefix` per process, an abstract memif socket
//! named after this process; the load stops by itself (idle after the stop, or a deadline).
#![cfg(feature = "dpdk")]

mod common;

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

use common::appliance::{dpdk_sections, file_prefix, final_counters, run_ok, Appliance};
use common::memif::MemifClient;
use common::{unix_s, CLAIM_KEY, TOKEN_KEY};
use shake::client::{check_answer, payload, request, Flow};
use shake::wire::shake::{Outcome, ShakeRequestRepr};

const USERS: u64 = 3_000;
/// Red packets seen before SIGTERM.
const PAID_BEFORE_STOP: usize = 100;

#[test]
fn sigterm_under_load_loses_nothing_from_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    std::fs::write(p.join("token.key"), TOKEN_KEY.to_hex()).unwrap();
    std::fs::write(p.join("claim.key"), CLAIM_KEY.to_hex()).unwrap();
    std::fs::write(
        p.join("activity.toml"),
        format!(
            r#"
[activity]
id = 41
name = "sigterm"
epoch = {}
[limits]
per_user = 3
per_sponsor = 1
[[sponsor]]
id = 1
budget_cents = 400000
packets = 2000
min_cents = 10
max_cents = 500
[[sponsor]]
id = 2
budget_cents = 200000
packets = 2000
min_cents = 5
max_cents = 200
[[sponsor]]
id = 3
budget_cents = 100000
packets = 2000
min_cents = 1
max_cents = 100
greeting_resources = [9]
[[round]]
id = 1
start_s = 0
duration_s = 30
win_probability = 0.5
greeting_probability = 0.2
"#,
            unix_s()
        ),
    )
    .unwrap();
    run_ok(
        Command::new(env!("CARGO_BIN_EXE_shake"))
            .args(["seedgen", "--nodes", "1", "--workers", "1", "--seed", "3"])
            .arg("--activity")
            .arg(p.join("activity.toml"))
            .arg("--out")
            .arg(p.join("seeds")),
    );
    let prefix = file_prefix("sigterm-node");
    let socket = p.join(format!("shake-test-sigterm-{}.memif", std::process::id()));
    std::fs::write(
        p.join("node.toml"),
        format!(
            r#"
[node]
index = 0
count = 1
ipv4 = "10.99.4.1"
planned_users = 20000

[activity]
file = "activity.toml"
seeds = "seeds"
journal = "journal"

[keys]
token_key = "token.key"
claim_key = "claim.key"

[throttle]
floor_ms = 1
ceiling_ms = 2

[stats]
interval_s = 0
prometheus = "127.0.0.1:0"
{}"#,
            dpdk_sections(
                &prefix,
                &format!("net_memif0,role=server,id=0,socket={}", socket.display()),
                1024,
                64,
                0
            )
        ),
    )
    .unwrap();

    let app = Appliance::start(&p.join("node.toml"), &prefix, None, true);
    let mut client = MemifClient::connect(
        &file_prefix("sigterm-client"),
        &socket,
        Duration::from_secs(10),
    );

    let flow = Flow {
        src_mac: [2, 0, 0, 0, 4, 9],
        dst_mac: [2, 0, 0, 0, 4, 1],
        vlan: None,
        src_ip: [10, 99, 4, 9],
        dst_ip: [10, 99, 4, 1],
        src_port: 30_000,
        dst_port: 7000,
    };
    let expiry = (unix_s() + 3600) as u32;
    let mut pending: HashMap<(u64, u32), ShakeRequestRepr> = HashMap::new();
    let mut seq = 0u32;
    let mut next = || {
        seq += 1;
        let user = u64::from(seq) % USERS + 1;
        let r = request(&TOKEN_KEY, user, seq, expiry, u64::from(seq));
        pending.insert((user, seq), r);
        let mut f = vec![0u8; 128];
        let n = flow.emit(&mut f, &payload(&r), seq as u16);
        f.truncate(n);
        Some(f)
    };
    // packet_id -> (user, amount, sponsor), as answered.
    let mut paid: HashMap<u64, (u64, u32, u32)> = HashMap::new();
    let mut answers = Vec::new();
    let mut stopped_at = None;
    let driven = client.drive(
        &mut next,
        256,
        Duration::from_secs(1),
        Instant::now() + Duration::from_secs(25),
        |a| {
            answers.push(a.to_vec());
            if a.len() >= 42 + 64 && a[42 + 4] == Outcome::RedPacket as u8 {
                let pid = u64::from_be_bytes(a[42 + 32..42 + 40].try_into().unwrap());
                let user = u64::from_be_bytes(a[42 + 8..42 + 16].try_into().unwrap());
                let amount = u32::from_be_bytes(a[42 + 40..42 + 44].try_into().unwrap());
                let sponsor = u32::from_be_bytes(a[42 + 44..42 + 48].try_into().unwrap());
                assert!(
                    paid.insert(pid, (user, amount, sponsor)).is_none(),
                    "packet {pid} answered twice"
                );
                if paid.len() == PAID_BEFORE_STOP {
                    stopped_at = Some(answers.len());
                    app.signal("TERM");
                }
            }
        },
    );
    let stopped_at = stopped_at.unwrap_or_else(|| {
        panic!(
            "only {} red packets in {} answers before the deadline",
            paid.len(),
            answers.len()
        )
    });
    assert!(
        driven.sent > driven.received,
        "the appliance stopped while requests were in flight: {driven:?}"
    );
    for a in &answers {
        let user = u64::from_be_bytes(a[50..58].try_into().unwrap());
        let sq = u32::from_be_bytes(a[58..62].try_into().unwrap());
        let r = pending
            .remove(&(user, sq))
            .unwrap_or_else(|| panic!("answer to no request: user {user} seq {sq}"));
        check_answer(&r, &a[42..], &CLAIM_KEY).unwrap_or_else(|e| panic!("user {user}: {e}"));
    }

    let (status, lines) = app.stop(Duration::from_secs(15));
    assert!(status.success(), "exit {status} after SIGTERM under load");
    let c = final_counters(&lines);
    assert!(
        c.get("tx").copied().unwrap_or(0) >= answers.len() as u64,
        "{c:?}"
    );
    assert!(
        c.get("red_packet").copied().unwrap_or(0) as usize >= paid.len(),
        "{c:?}"
    );

    // Every journal record.
    // Every journal record: no packet twice, limits hold.
    let journaled = common::audit_journals(&p.join("journal"), 1);
    let claims = &journaled.claims;
    for (pid, got) in &paid {
        assert_eq!(
            claims.get(pid),
            Some(got),
            "red packet {pid} answered but not journaled"
        );
    }
    assert_eq!(
        c.get("red_packet").copied().unwrap_or(0),
        claims.len() as u64,
        "every issued packet is journaled: {c:?}"
    );
    assert_eq!(journaled.forfeits, 0, "a clean stop forfeits nothing");

    let out = run_ok(
        Command::new(env!("CARGO_BIN_EXE_shake"))
            .arg("reconcile")
            .arg("--manifest")
            .arg(p.join("seeds/manifest.toml"))
            .arg("--seeds")
            .arg(p.join("seeds"))
            .arg("--journals")
            .arg(p.join("journal")),
    );
    assert!(out.contains("reconcile: exact"), "{out}");
    eprintln!(
        "SIGTERM after {stopped_at} answers; {} answers, {} red packets seen, {} journaled, {driven:?}",
        answers.len(),
        paid.len(),
        claims.len()
    );
}
