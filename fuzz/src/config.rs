//! The config targets: the node config and the activity, as an operator edits them. What
//! parses must keep the rules the node relies on; what does not must say where, as
//! `FILE:LINE: KEY: MESSAGE` with a line that exists, and say it once.

use std::path::{Component, Path, PathBuf};
use std::sync::OnceLock;

use shake::activity::Activity;
use shake::engine::Live;
use shake::node_config::NodeConfig;
use shake::seed::plan;

use crate::files::scratch;

/// Plans only activities this small: a plan holds every packet.
const MAX_PLANNED_PACKETS: u64 = 4096;

/// Checks an error message's place: the file, a line of the text (or one past its end), a
/// key, a message, and no part said twice.
fn check_error(message: &str, file: &str, text: &str) {
    let rest = message
        .strip_prefix(file)
        .and_then(|r| r.strip_prefix(':'))
        .unwrap_or_else(|| panic!("{message:?} does not start with {file}:"));
    let (line, rest) = rest.split_once(": ").expect("a line");
    let line: usize = line
        .parse()
        .unwrap_or_else(|_| panic!("{message:?}: no line number"));
    let lines = text.split('\n').count();
    assert!(
        (1..=lines).contains(&line),
        "{message:?}: line {line} of a text of {lines} lines"
    );
    let (key, what) = split_key(rest).unwrap_or_else(|| panic!("{message:?}: no key"));
    assert!(!key.is_empty() && !what.is_empty(), "{message:?}");
    if !text.contains(file) {
        assert!(
            !what.contains(&format!("{file}:")),
            "{message:?} repeats its place"
        );
    }
}

/// `KEY: MESSAGE`, where the key may hold quoted parts (`t."a: b"`).
fn split_key(rest: &str) -> Option<(&str, &str)> {
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in rest.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ':' if !quoted && rest[i..].starts_with(": ") => {
                return Some((&rest[..i], &rest[i + 2..]));
            }
            _ => {}
        }
    }
    None
}

fn plain(p: &Path) -> bool {
    p.components().all(|c| matches!(c, Component::Normal(_)))
}

/// The node directory the config target's files resolve into: an activity, keys and a
/// blacklist, so that a config naming them reaches the activity, key and blacklist readers.
fn node_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let d = scratch().join("node");
        std::fs::create_dir_all(&d).expect("node scratch");
        std::fs::write(d.join("act.toml"), crate::frames::ACTIVITY).unwrap();
        std::fs::write(d.join("token.key"), "000102030405060708090a0b0c0d0e0f\n").unwrap();
        std::fs::write(d.join("claim.key"), "0011\n").unwrap();
        std::fs::write(d.join("good.key"), "101112131415161718191a1b1c1d1e1f").unwrap();
        std::fs::write(d.join("black.txt"), "# users\n1\n2 # two\nx\n").unwrap();
        std::fs::write(d.join("ok.txt"), "1\n2\n").unwrap();
        d
    })
}

pub fn node_config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let path = node_dir().join("node.toml");
    let file = path.display().to_string();
    let c = match NodeConfig::parse(&path, text) {
        Ok(c) => c,
        Err(e) => return check_error(&e.to_string(), &file, text),
    };
    assert!(c.node.count >= 1 && c.node.index < c.node.count);
    let t = c.throttle();
    assert!(t.floor_ms >= 1 && t.floor_ms <= t.ceiling_ms);
    assert!(c.socket.workers >= 1 && (1..=1024).contains(&c.socket.batch));
    if let Some(d) = &c.dpdk {
        assert!(d.validate(&c.port).is_ok());
    }
    let _ = (c.socket_bind(), c.epoch_s(1_700_000_000));
    // The files it names, where they are plain names in its directory.
    let names = [
        Some(&c.activity.file),
        Some(&c.keys.token_key),
        Some(&c.keys.claim_key),
        c.blacklist.file.as_ref(),
    ];
    if !names.into_iter().flatten().all(|p| plain(p)) {
        return;
    }
    let other = |e: &shake::node_config::ConfigError| {
        let m = e.to_string();
        // Errors inside a named file name that file and its own line.
        if !m.starts_with(&format!("{file}:")) {
            assert!(m.starts_with(&node_dir().display().to_string()), "{m}");
            assert!(!m.contains(":0:"), "{m}");
        } else {
            check_error(&m, &file, text);
        }
    };
    let activity = c.activity();
    let identity = c.identity();
    let blacklist = c.blacklist();
    for e in [
        activity.as_ref().err(),
        identity.as_ref().err(),
        blacklist.as_ref().err(),
    ]
    .into_iter()
    .flatten()
    {
        other(e);
    }
    if let (Ok(a), Ok(_), Ok(_)) = (&activity, &identity, &blacklist) {
        let live = c.live(a, 1_700_000_000, 0, 1_700_000_000).expect("live");
        check_live(&live);
    }
}

fn check_live(live: &Live) {
    for r in &live.rounds {
        assert!(r.start_ms <= r.end_ms);
    }
    assert!(live.rounds.windows(2).all(|w| w[0].end_ms <= w[1].start_ms));
}

pub fn activity(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let file = "fuzz/act.toml";
    let a = match Activity::parse(Path::new(file), text) {
        Ok(a) => a,
        Err(e) => return check_error(&e.to_string(), file, text),
    };
    assert!(a.header.id != 0);
    assert!(!a.sponsors.is_empty() && !a.rounds.is_empty());
    assert!(a.limits.per_sponsor >= 1 && a.limits.per_sponsor <= a.limits.per_user);
    assert!(a
        .rounds
        .windows(2)
        .all(|w| w[0].start_s + w[0].duration_s as u64 <= w[1].start_s));
    let (packets, cents) = a.totals();
    let live = Live::new(
        &a,
        shake::engine::Identity {
            node_index: 0,
            node_count: 1,
            token_key: shake::mac::MacKey::from_bytes([1; 16]),
            claim_key: shake::mac::MacKey::from_bytes([2; 16]),
        },
        shake::engine::Throttle::default(),
        None,
        0,
        Default::default(),
        1,
    );
    check_live(&live);
    a.check_same_ids(&a).expect("an activity has its own ids");
    if packets > MAX_PLANNED_PACKETS {
        return;
    }
    // The plan pays every sponsor's budget exactly, in its packet count, within its bounds,
    // in its rounds, under ids that carry the activity and never repeat.
    let planned = plan::plan(&a, 2, 2, 7);
    assert_eq!(planned.len() as u64, packets);
    let mut sums = vec![(0u64, 0u64); a.sponsors.len()];
    let mut ids = std::collections::HashSet::new();
    for p in &planned {
        let r = &p.record;
        let s = &a.sponsors[r.sponsor_index as usize];
        assert!((s.min_cents..=s.max_cents()).contains(&r.amount_cents));
        let round = a.rounds[r.round_index as usize].id;
        assert!(s.rounds.as_ref().is_none_or(|ids| ids.contains(&round)));
        assert!(ids.insert(r.packet_id), "packet id {} twice", r.packet_id);
        assert_eq!(
            r.packet_id >> 40,
            a.header.id as u64,
            "packet id carries the activity"
        );
        assert!(p.shard < 4);
        let e = &mut sums[r.sponsor_index as usize];
        e.0 += 1;
        e.1 += r.amount_cents as u64;
    }
    for (s, (n, c)) in a.sponsors.iter().zip(&sums) {
        assert_eq!((*n, *c), (s.packets as u64, s.budget_cents));
    }
    assert_eq!(sums.iter().map(|s| s.1).sum::<u64>(), cents);
}
