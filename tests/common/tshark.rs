//! tshark (Debian's `tshark`, which `make deps` installs) with the SHAKE/1 dissector,
//! `bench/shake.lua`, loaded by `-X lua_script:`, over a capture file: its field values
//! (`-T fields`), its expert info and its `-V` text.

use std::path::{Path, PathBuf};
use std::process::Command;

use shake::wire::shake::{Outcome, ShakeAnswer, ShakeAnswerRepr, ShakeRequest, ShakeRequestRepr};

/// The dissector in the repository.
pub fn dissector() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    root.ancestors()
        .map(|d| d.join("bench/shake.lua"))
        .find(|p| p.exists())
        .expect("bench/shake.lua in the workspace")
}

/// tshark, or None (and a line saying the test is skipped) where it is not installed: a
/// developer's machine without it still runs the rest of the suite; `make test` installs it.
pub fn tshark(test: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("tshark"))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        eprintln!(
            "{test}: SKIPPED, tshark is not installed (`make deps` installs it: \
             apt-get install tshark)"
        );
    }
    found
}

/// tshark over `pcap` with the dissector and `args`; panics with its output unless it
/// succeeds and loaded the dissector without a Lua error. `two_pass` reads the file twice
/// (`-2`), so requests know their answers too.
pub fn run(tshark: &Path, pcap: &Path, two_pass: bool, args: &[&str]) -> String {
    let mut cmd = Command::new(tshark);
    cmd.arg("-X")
        .arg(format!("lua_script:{}", dissector().display()))
        // No name resolution, and none of the machine's user's preferences.
        .arg("-n")
        .env(
            "WIRESHARK_CONFIG_DIR",
            std::env::temp_dir().join("shake-no-wireshark-config"),
        )
        .arg("-r")
        .arg(pcap);
    if two_pass {
        cmd.arg("-2");
    }
    let out = cmd
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    // A Lua error in the dissector is printed and tshark carries on without it.
    assert!(
        !stderr.contains("Lua") && !stdout.contains("Lua Error"),
        "the dissector failed:\n{stderr}\n{stdout}"
    );
    stdout
}

/// `-T fields` of every frame: one row per frame, one column per field; a field that occurs
/// more than once in a frame has its values joined by `|`, an absent one is empty.
pub fn fields(tshark: &Path, pcap: &Path, two_pass: bool, names: &[&str]) -> Vec<Vec<String>> {
    let mut args = vec![
        "-T",
        "fields",
        "-E",
        "separator=/t",
        "-E",
        "occurrence=a",
        "-E",
        "aggregator=|",
    ];
    for n in names {
        args.extend(["-e", n]);
    }
    run(tshark, pcap, two_pass, &args)
        .lines()
        .map(|l| l.split('\t').map(str::to_owned).collect())
        .collect()
}

/// The `-V` text of the SHAKE/1 layer (`-O shake`) of the frames `filter` selects.
pub fn verbose(tshark: &Path, pcap: &Path, filter: &str) -> String {
    run(tshark, pcap, true, &["-V", "-O", "shake", "-Y", filter])
}

// --- What the dissector must say about a frame, as the node's own parser reads it. ---

/// The request fields, in the order [`request_row`] gives their expected values.
pub const REQUEST_FIELDS: &[&str] = &[
    "shake.direction",
    "shake.magic",
    "shake.version",
    "shake.kind",
    "shake.shakes",
    "shake.reserved",
    "shake.user_id",
    "shake.seq",
    "shake.config_version",
    "shake.client_ts",
    "shake.token_expiry",
    "shake.token",
    "shake.padding",
    "shake.drop_reason",
    "_ws.expert.message",
];

/// The answer fields, in the order [`answer_row`] gives their expected values.
pub const ANSWER_FIELDS: &[&str] = &[
    "shake.direction",
    "shake.magic",
    "shake.version",
    "shake.kind",
    "shake.outcome",
    "shake.flags",
    "shake.flags.config_stale",
    "shake.resource_id",
    "shake.owner_node",
    "shake.user_id",
    "shake.seq",
    "shake.retry_after_ms",
    "shake.client_ts",
    "shake.packet_id",
    "shake.amount_cents",
    "shake.sponsor_id",
    "shake.claim_mac",
    "shake.config_version",
    "shake.round_id",
    "_ws.expert.message",
];

fn spaced(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// UDP source port, destination port and payload of an untagged Ethernet frame, IPv4 (with
/// or without options) or IPv6 (without extension headers): what the tests' frames are.
/// Read by offsets here, not by the node's parser, which is what is being checked.
pub fn udp_of(frame: &[u8]) -> Option<(u16, u16, &[u8])> {
    let be16 = |at: usize| Some(u16::from_be_bytes(frame.get(at..at + 2)?.try_into().ok()?));
    let udp = match be16(12)? {
        0x0800 if *frame.get(23)? == 17 => 14 + usize::from(frame.get(14)? & 0x0f) * 4,
        0x86dd if *frame.get(20)? == 17 => 14 + 40,
        _ => return None,
    };
    let len = usize::from(be16(udp + 4)?);
    Some((be16(udp)?, be16(udp + 2)?, frame.get(udp + 8..udp + len)?))
}

/// What tshark must say about a well-formed request, field by field.
pub fn request_row(p: &[u8]) -> Vec<String> {
    let r = ShakeRequestRepr::parse(&ShakeRequest::new_checked(p).unwrap()).unwrap();
    vec![
        "to the node".into(),
        format!("0x{:02x}{:02x}", p[0], p[1]),
        p[2].to_string(),
        format!("0x{:02x}", p[3]),
        r.shakes.to_string(),
        format!("{}|{}", spaced(&p[6..8]), spaced(&p[36..40])),
        r.user_id.to_string(),
        r.seq.to_string(),
        r.config_version.to_string(),
        r.client_ts.to_string(),
        r.token_expiry.to_string(),
        format!("0x{:016x}", r.token),
        spaced(&p[48..64]),
        String::new(),
        String::new(),
    ]
}

/// What tshark must say about an answer, field by field (our parser's reading of it).
pub fn answer_row(p: &[u8]) -> Vec<String> {
    let a = ShakeAnswerRepr::parse(&ShakeAnswer::new_checked(p).unwrap()).unwrap();
    let redirect = a.outcome == Outcome::Redirect;
    let resource = a.resource_id.to_string();
    vec![
        "from the node".into(),
        format!("0x{:02x}{:02x}", p[0], p[1]),
        p[2].to_string(),
        format!("0x{:02x}", p[3]),
        (a.outcome as u8).to_string(),
        format!("0x{:02x}", a.flags),
        (a.flags & 1).to_string(),
        if redirect {
            String::new()
        } else {
            resource.clone()
        },
        if redirect { resource } else { String::new() },
        a.user_id.to_string(),
        a.seq.to_string(),
        a.retry_after_ms.to_string(),
        a.client_ts.to_string(),
        a.packet_id.to_string(),
        a.amount_cents.to_string(),
        a.sponsor_id.to_string(),
        format!("0x{:016x}", a.claim_mac),
        a.config_version.to_string(),
        a.round_id.to_string(),
        String::new(),
    ]
}
