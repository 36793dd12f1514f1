//! tshark (Debian's `tshark`, which `make deps` installs) with the SHAKE/1 dissector,
//! `bench/shake.lua`, loaded by `-X lua_script:`, over a capture file: its field values
//! (`-T fields`), its expert info and its `-V` text.

use std::path::{Path, PathBuf};
use std::process::Command;

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
