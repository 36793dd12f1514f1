//! Writes the seed inputs of every fuzz target into `fuzz/seeds/<target>/`, from the project's
//! own writers and test shapes: requests built by `shake::client`, shards and a manifest from
//! `seedgen`'s code, journal segments from the journal's encoder, the shipped configs and
//! activities. Run by `make fuzz-seeds`; the output is committed, so fuzzing needs no build of
//! this.

use std::path::{Path, PathBuf};

use shake::client::{self, Flow, Flow6};
use shake::journal::format::{self as jf, JournalId, SegmentHeader};
use shake::journal::{Claim, Kind};
use shake::mac::MacKey;
use shake::seed::manifest;
use shake_fuzz::files::{JOURNAL_COMPACT_HEADER, SHARD_COMPACT_HEADER};
use shake_fuzz::frames::{
    self, Burst, CLOCK_BASE_MS, OUR_IP, OUR_IPV6, OUR_LINK_LOCAL, OUR_MAC, OUR_PORT, TOKEN_KEY,
};

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = root.join("seeds");
    let repo = root.parent().expect("fuzz/ is in the repository");
    frame_seeds(&target(&out, "frame"));
    config_seeds(
        repo,
        &target(&out, "node_config"),
        &target(&out, "activity"),
    );
    file_seeds(
        &target(&out, "shard"),
        &target(&out, "manifest"),
        &target(&out, "journal"),
    );
    println!("seeds written under {}", out.display());
}

fn target(out: &Path, name: &str) -> PathBuf {
    let d = out.join(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("seed directory");
    d
}

/// Writes a frame seed and returns what the datapath answered to it.
fn frame_seed(dir: &Path, name: &str, b: &Burst) -> frames::Summary {
    let bytes = b.to_bytes();
    write(dir, name, &bytes);
    let s = frames::run_and_check(&Burst::from_bytes(&bytes));
    println!("frame/{name}: {s:?}");
    s
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::write(dir.join(name), bytes).expect("write seed");
}

fn flow(user_port: u16) -> Flow {
    Flow {
        src_mac: PEER_MAC,
        dst_mac: OUR_MAC,
        vlan: None,
        src_ip: [10, 0, 0, 9],
        dst_ip: OUR_IP,
        src_port: user_port,
        dst_port: OUR_PORT,
    }
}

/// A request frame: `user` with a token valid until `expiry`, on `flow`.
fn request(flow: &Flow, user: u64, expiry: u32, config_version: u32) -> Vec<u8> {
    let key = MacKey::from_bytes(TOKEN_KEY);
    let mut r = client::request(&key, user, 77, expiry, 0xfeed);
    r.config_version = config_version;
    let mut buf = vec![0u8; 256];
    let len = flow.emit(&mut buf, &client::payload(&r), 1);
    buf.truncate(len);
    buf
}

/// The same frame with a 4-byte IPv4 option (router alert) inserted; checksums left to
/// the fuzzer's repair flag.
fn with_option(f: &[u8], l3: usize) -> Vec<u8> {
    let mut g = f[..l3 + 20].to_vec();
    g.extend_from_slice(&[0x94, 0x04, 0x00, 0x00]);
    g.extend_from_slice(&f[l3 + 20..]);
    g[l3] = 0x46;
    let total = u16::from_be_bytes([g[l3 + 2], g[l3 + 3]]) + 4;
    g[l3 + 2..l3 + 4].copy_from_slice(&total.to_be_bytes());
    frames::repair(&mut g);
    g
}

fn arp_request(target_ip: [u8; 4]) -> Vec<u8> {
    let mut f = vec![0xff; 6];
    f.extend_from_slice(&[2, 0, 0, 0, 0, 9, 0x08, 0x06]);
    f.extend_from_slice(&[0, 1, 0x08, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&[2, 0, 0, 0, 0, 9, 10, 0, 0, 9]);
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&target_ip);
    f.resize(60, 0);
    f
}

fn icmp_echo() -> Vec<u8> {
    let mut f = OUR_MAC.to_vec();
    f.extend_from_slice(&[2, 0, 0, 0, 0, 9, 0x08, 0x00]);
    let data = b"shake ping 0123456789";
    let total = (20 + 8 + data.len()) as u16;
    f.extend_from_slice(&[0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 1, 0, 0, 10, 0, 0, 9]);
    f[16..18].copy_from_slice(&total.to_be_bytes());
    f.extend_from_slice(&OUR_IP);
    f.extend_from_slice(&[8, 0, 0, 0, 0x12, 0x34, 0, 1]);
    f.extend_from_slice(data);
    frames::repair(&mut f);
    f
}

const PEER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 9];
/// 2001:db8::9.
const PEER6: [u8; 16] = [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9];
/// fe80::9.
const PEER6_LL: [u8; 16] = [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9];

fn flow6(user_port: u16) -> Flow6 {
    Flow6 {
        src_mac: PEER_MAC,
        dst_mac: OUR_MAC,
        vlan: None,
        src_ip: PEER6,
        dst_ip: OUR_IPV6,
        src_port: user_port,
        dst_port: OUR_PORT,
    }
}

/// [`request`] over IPv6.
fn request6(flow: &Flow6, user: u64, expiry: u32) -> Vec<u8> {
    let key = MacKey::from_bytes(TOKEN_KEY);
    let r = client::request(&key, user, 77, expiry, 0xfeed);
    let mut buf = vec![0u8; 256];
    let len = flow.emit(&mut buf, &client::payload(&r));
    buf.truncate(len);
    buf
}

/// An untagged IPv6 frame with a hop-by-hop header and a destination-options header (each
/// 8 bytes: PadN) inserted before its upper layer; its checksums need no change.
fn with_extensions6(f: &[u8]) -> Vec<u8> {
    let upper = f[14 + 6];
    let mut g = f[..54].to_vec();
    g.extend_from_slice(&[60, 0, 1, 4, 0, 0, 0, 0]);
    g.extend_from_slice(&[upper, 0, 1, 4, 0, 0, 0, 0]);
    g.extend_from_slice(&f[54..]);
    g[14 + 6] = 0;
    let pl = (g.len() - 54) as u16;
    g[18..20].copy_from_slice(&pl.to_be_bytes());
    g
}

/// An untagged Ethernet/IPv6 frame carrying the ICMPv6 message `icmp` (checksum repaired).
fn icmp6(
    macs: ([u8; 6], [u8; 6]),
    src: [u8; 16],
    dst: [u8; 16],
    hop_limit: u8,
    icmp: &[u8],
) -> Vec<u8> {
    let mut f = macs.0.to_vec();
    f.extend_from_slice(&macs.1);
    f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
    f.extend_from_slice(&(icmp.len() as u16).to_be_bytes());
    f.extend_from_slice(&[58, hop_limit]);
    f.extend_from_slice(&src);
    f.extend_from_slice(&dst);
    f.extend_from_slice(icmp);
    frames::repair(&mut f);
    f
}

fn solicited_node(a: [u8; 16]) -> [u8; 16] {
    let mut g = [0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, 0, 0, 0];
    g[13..].copy_from_slice(&a[13..]);
    g
}

/// A Neighbor Solicitation for `target` from `src`, to `target`'s solicited-node group (its
/// multicast MAC), with the NDP options `opts`.
fn neighbor_solicit(src: [u8; 16], target: [u8; 16], opts: &[u8]) -> Vec<u8> {
    let group = solicited_node(target);
    let mac = [0x33, 0x33, group[12], group[13], group[14], group[15]];
    let mut m = vec![135, 0, 0, 0, 0, 0, 0, 0];
    m.extend_from_slice(&target);
    m.extend_from_slice(opts);
    icmp6((mac, PEER_MAC), src, group, 255, &m)
}

fn burst(frames: Vec<Vec<u8>>, now_ms: u64) -> Burst {
    Burst {
        udp_offload: false,
        ipv4_offload: false,
        repair: false,
        node_count: 1,
        bursts: 1,
        now_ms,
        frames,
    }
}

fn frame_seeds(dir: &Path) {
    let mut total = Total::default();
    let mid = 1_150_000;
    let expiry = 2_000_000_000;
    let f = flow(40000);
    let one = request(&f, 1001, expiry, 100);
    total += frame_seed(dir, "request", &burst(vec![one.clone()], mid));
    let mut b = burst(vec![one.clone()], mid);
    b.udp_offload = true;
    total += frame_seed(dir, "request-offload", &b);
    let mut b = burst(vec![one.clone()], mid);
    b.repair = true;
    b.bursts = 2;
    total += frame_seed(dir, "request-repair-twice", &b);
    total += frame_seed(
        dir,
        "request-closed",
        &burst(vec![one.clone()], CLOCK_BASE_MS),
    );
    let stale = request(&f, 1002, expiry, 3);
    let expired = request(&f, 1003, 1000, 100);
    total += frame_seed(dir, "stale-and-expired", &burst(vec![stale, expired], mid));
    let mut tagged = Flow {
        vlan: Some(100),
        ..f
    };
    let vlan = request(&tagged, 1004, expiry, 100);
    let opts = with_option(&vlan, 18);
    let mut b = burst(vec![vlan.clone(), opts.clone()], mid);
    b.repair = true;
    total += frame_seed(dir, "vlan-options", &b);
    // The IPv4 header checksum left to the NIC, alone and with the UDP checksum, on the
    // common frame and on the general path (a VLAN tag, options).
    let mut b = burst(vec![one.clone(), vlan, opts], mid);
    b.repair = true;
    b.ipv4_offload = true;
    total += frame_seed(dir, "ipv4-offload", &b);
    b.udp_offload = true;
    total += frame_seed(dir, "ipv4-and-udp-offload", &b);
    tagged.vlan = None;
    tagged.dst_mac = [0xff; 6];
    let bcast = request(&tagged, 1005, expiry, 100);
    total += frame_seed(dir, "broadcast-dst", &burst(vec![bcast], mid));
    let many: Vec<Vec<u8>> = (0..16u64)
        .map(|u| request(&flow(40000 + u as u16), 2000 + u % 5, expiry, 100))
        .collect();
    let mut b = burst(many, mid);
    b.node_count = 2;
    b.bursts = 4;
    total += frame_seed(dir, "burst-16-redirects", &b);
    let arp_icmp = vec![arp_request(OUR_IP), arp_request([10, 0, 0, 7]), icmp_echo()];
    total += frame_seed(dir, "arp-and-icmp", &burst(arp_icmp, mid));
    let mut wrong_port = request(&flow(40000), 1006, expiry, 100);
    wrong_port[36..38].copy_from_slice(&7001u16.to_be_bytes());
    let mut b = burst(vec![wrong_port, one[..40].to_vec()], mid);
    b.repair = true;
    total += frame_seed(dir, "wrong-port-and-truncated", &b);
    total += frame_seeds6(dir, mid, expiry);
    // The seeds reach every outcome, ARP and ICMP: the fuzzer starts past the checksums.
    for (name, n) in [
        "nothing",
        "greeting",
        "red packet",
        "throttled",
        "closed",
        "denied",
        "redirect",
    ]
    .iter()
    .zip(total.0.outcomes)
    {
        assert!(n > 0, "no frame seed gets {name}");
    }
    assert!(total.0.arp > 0 && total.0.icmp > 0);
}

/// The IPv6 seeds: each asserts what the node answered, so a seed that stops reaching its
/// answer fails here, not silently in the fuzzer.
fn frame_seeds6(dir: &Path, mid: u64, expiry: u32) -> frames::Summary {
    let mut total = Total::default();
    let f = flow6(40000);
    let one = request6(&f, 1101, expiry);
    let s = frame_seed(dir, "v6-request", &burst(vec![one.clone()], mid));
    assert_eq!(s.shake6, 1);
    total += s;
    let mut b = burst(vec![one.clone()], mid);
    b.udp_offload = true;
    total += frame_seed(dir, "v6-request-offload", &b);
    let ll = request6(
        &Flow6 {
            src_ip: PEER6_LL,
            dst_ip: OUR_LINK_LOCAL,
            ..f
        },
        1102,
        expiry,
    );
    let mut b = burst(vec![with_extensions6(&one), ll], mid);
    b.repair = true;
    b.bursts = 2;
    let s = frame_seed(dir, "v6-hop-by-hop-and-link-local", &b);
    assert_eq!(s.shake6, 4);
    total += s;
    let vlan = request6(
        &Flow6 {
            vlan: Some(100),
            ..f
        },
        1103,
        expiry,
    );
    let mut b = burst(vec![vlan], mid);
    b.udp_offload = true;
    let s = frame_seed(dir, "v6-vlan-offload", &b);
    assert_eq!(s.shake6, 1);
    total += s;

    // Neighbor Discovery: a solicitation to the solicited-node group with a source
    // link-layer option, one for the link-local address, one for an address not ours.
    let mut slla = vec![1, 1];
    slla.extend_from_slice(&PEER_MAC);
    let ns = vec![
        neighbor_solicit(PEER6, OUR_IPV6, &slla),
        neighbor_solicit(PEER6_LL, OUR_LINK_LOCAL, &slla),
        neighbor_solicit(PEER6, PEER6, &slla),
    ];
    let s = frame_seed(dir, "v6-neighbor-solicit", &burst(ns, mid));
    assert_eq!((s.ndp, s.ndp_dad), (2, 0));
    total += s;
    // Duplicate address detection probes (from ::): one with a nonce option (RFC 7527, as
    // Linux sends them), one without options.
    let nonce = [14, 1, 1, 2, 3, 4, 5, 6];
    let dad = vec![
        neighbor_solicit([0; 16], OUR_LINK_LOCAL, &nonce),
        neighbor_solicit([0; 16], OUR_IPV6, &[]),
    ];
    let s = frame_seed(dir, "v6-dad-probe", &burst(dad, mid));
    assert_eq!((s.ndp, s.ndp_dad), (2, 2));
    total += s;

    let mut echo = vec![128, 0, 0, 0, 0x12, 0x34, 0, 1];
    echo.extend_from_slice(b"shake ping6 0123456789");
    let pings = vec![
        icmp6((OUR_MAC, PEER_MAC), PEER6, OUR_IPV6, 64, &echo),
        icmp6((OUR_MAC, PEER_MAC), PEER6_LL, OUR_LINK_LOCAL, 1, &echo),
    ];
    let s = frame_seed(dir, "v6-echo", &burst(pings, mid));
    assert_eq!(s.icmp6, 2);
    total += s;

    // IPv4 and IPv6 users in one burst, some on the other node, decided again and again.
    let many: Vec<Vec<u8>> = (0..16u64)
        .map(|u| {
            if u % 2 == 0 {
                request6(&flow6(41000 + u as u16), 3000 + u % 5, expiry)
            } else {
                request(&flow(41000 + u as u16), 3000 + u % 5, expiry, 100)
            }
        })
        .collect();
    let mut b = burst(many, mid);
    b.node_count = 2;
    b.bursts = 4;
    let s = frame_seed(dir, "v6-mixed-burst", &b);
    assert!(s.shake6 > 0);
    total += s;
    total.0
}

#[derive(Default)]
struct Total(frames::Summary);

impl std::ops::AddAssign<frames::Summary> for Total {
    fn add_assign(&mut self, s: frames::Summary) {
        for (a, b) in self.0.outcomes.iter_mut().zip(s.outcomes) {
            *a += b;
        }
        self.0.arp += s.arp;
        self.0.icmp += s.icmp;
        self.0.dropped += s.dropped;
        self.0.shake6 += s.shake6;
        self.0.icmp6 += s.icmp6;
        self.0.ndp += s.ndp;
        self.0.ndp_dad += s.ndp_dad;
    }
}

fn config_seeds(repo: &Path, node_dir: &Path, act_dir: &Path) {
    for name in ["demo.toml", "pcap.toml", "bare-metal.toml"] {
        let text = std::fs::read(repo.join("nic-config").join(name)).expect("nic-config");
        write(node_dir, name, &text);
    }
    // Names the files of the target's node directory, so the readers behind them run.
    let node = r#"[node]
index = 0
count = 2
ipv4 = "10.0.0.2"
mac = "02:00:00:00:00:02"

[activity]
file = "act.toml"
epoch = 1700000000
calibration_ms = -1500

[keys]
token_key = "token.key"
claim_key = "good.key"

[throttle]
floor_ms = 5000
ceiling_ms = 10000

[blacklist]
users = [5, 6]
file = "ok.txt"

[socket]
workers = 2
batch = 64

[dpdk]
lcores = "0-2"
huge = false
file_prefix = "fuzz"
handoff_ring = 1024

[[port]]
name = "net_null0"
mtu = 1500
"#;
    write(node_dir, "node-files", node.as_bytes());
    write(
        node_dir,
        "node-bad-files",
        node.replace("good.key", "claim.key")
            .replace("ok.txt", "black.txt")
            .as_bytes(),
    );
    for name in ["demo.toml", "large.toml"] {
        let text = std::fs::read(repo.join("seeds").join(name)).expect("seeds");
        write(act_dir, name, &text);
    }
    write(act_dir, "fuzz.toml", frames::ACTIVITY.as_bytes());
}

fn file_seeds(shard_dir: &Path, manifest_dir: &Path, journal_dir: &Path) {
    let tmp = std::env::temp_dir().join(format!("shake-gen-seeds-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let a = frames::activity();
    manifest::generate(a, 1, 1, 3, &tmp).expect("seedgen");
    let shard = std::fs::read(tmp.join(manifest::shard_rel_path(0, 0))).expect("shard");
    for (name, flags, bytes) in [
        ("as-written", 0u8, shard.clone()),
        ("crc-repaired", 1, shard.clone()),
        (
            "compact-repaired",
            3,
            compact(&shard, SHARD_COMPACT_HEADER, shake::seed::shard::HEADER_LEN),
        ),
    ] {
        let mut input = vec![flags];
        input.extend_from_slice(&bytes);
        write(shard_dir, name, &input);
    }
    let m = std::fs::read(tmp.join(manifest::MANIFEST_FILE)).expect("manifest");
    write(manifest_dir, "manifest.toml", &m);
    let _ = std::fs::remove_dir_all(&tmp);

    let id = JournalId {
        activity_id: 5,
        node: 0,
        worker: 0,
    };
    let segment = |number: u64, first_seq: u64, capacity: u64, records: u64| {
        let mut b = SegmentHeader {
            id,
            segment: number,
            first_seq,
            capacity,
        }
        .to_bytes()
        .to_vec();
        for k in 0..capacity {
            let seq = first_seq + k;
            let r = if k < records {
                let claim = Claim {
                    packet_id: (5 << 40) | (seq + 1),
                    user_id: 1000 + seq,
                    amount_cents: 50,
                    sponsor_id: 11,
                    round_id: 1,
                    time_ms: 1_150_000 + seq,
                };
                let kind = if seq % 3 == 2 {
                    Kind::Forfeit
                } else {
                    Kind::Claim
                };
                jf::encode(seq, kind, &claim)
            } else {
                [0u8; jf::RECORD_LEN]
            };
            b.extend_from_slice(&r);
        }
        b
    };
    let one = segment(0, 0, 8, 3);
    let mut input = vec![0u8];
    input.extend_from_slice(&one);
    write(journal_dir, "one-segment", &input);
    let mut input = vec![7u8];
    input.extend_from_slice(&compact(&one, JOURNAL_COMPACT_HEADER, jf::HEADER_LEN));
    write(journal_dir, "one-segment-compact", &input);
    // Two segments of equal length: the harness splits the input in halves.
    let mut input = vec![8u8];
    input.extend_from_slice(&segment(0, 0, 4, 4));
    input.extend_from_slice(&segment(1, 4, 4, 2));
    write(journal_dir, "two-segments", &input);
}

/// A file as a compact input: the header's first `given` bytes, then what follows the header.
fn compact(file: &[u8], given: usize, header_len: usize) -> Vec<u8> {
    let mut out = file[..given].to_vec();
    out.extend_from_slice(&file[header_len..]);
    out
}
