//! Operator mistakes never cost money (SPEC section 4): a shard the manifest does not list,
//! or a journal directory that cannot explain the shards' marks, stops the node at start with
//! an error naming both, before any file is changed; and seedgen never leaves two generations
//! of seeds side by side.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{file_bytes, seedgen, unix_s, NodeDir, NodeToml, Server, TOKEN_KEY};
use shake::client;
use shake::node::{unix_ms, Node};
use shake::seed::manifest::generate;
use shake::wire::shake::Outcome;

/// A node directory whose activity has one long round that started long ago (so pacing lets
/// nearly every packet out) and wins on every shake; `node.toml` names `seeds` and
/// `journal`, plus `extra`.
fn node(journal: &str, extra: &str) -> NodeDir {
    let d = NodeDir::with_activity(&format!(
        r#"
[activity]
id = 41
name = "money"
epoch = {}
[[sponsor]]
id = 1
budget_cents = 20000
packets = 200
[[sponsor]]
id = 2
budget_cents = 30000
packets = 200
[[round]]
id = 1
start_s = 0
duration_s = 4000
win_probability = 1.0
"#,
        unix_s() - 3900
    ));
    write_config(&d, journal, extra);
    d
}

fn write_config(d: &NodeDir, journal: &str, extra: &str) -> PathBuf {
    NodeToml::new("127.0.0.1", 10_000)
        .port(0)
        .activity(r#"seeds = "seeds""#)
        .activity(&format!("journal = \"{journal}\""))
        .extra("[throttle]\nfloor_ms = 1\nceiling_ms = 2\n")
        .extra(extra)
        .write(d.path())
}

fn shake_bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_shake"))
}

/// Runs `cmd` to completion with its output in files, or kills it (by its PID) after 60 s: a
/// node that should have refused to start but serves instead must fail the test, not hang it.
fn run(cmd: &mut Command) -> Output {
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    let (out, err) = (dir.path().join("out"), dir.path().join("err"));
    let mut child = cmd
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{cmd:?} still running after 60 s (it should have refused to start):\n{}",
                std::fs::read_to_string(&err).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: std::fs::read(&out).unwrap(),
        stderr: std::fs::read(&err).unwrap(),
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Serves `users` shakes in process (the node's real durable workers), one per user, and
/// stops cleanly (or, `kill`, as a SIGKILL would: nothing closed). Returns the red packets.
fn win_some(config: &Path, users: u64, kill: bool) -> u64 {
    let node = Node::load(config).unwrap();
    let now = unix_ms();
    let (mut workers, flushers, _) = node.durable_workers(now).unwrap();
    assert_eq!(workers.len(), 1);
    let w = &mut workers[0];
    let expiry = (now / 1000 + 3600) as u32;
    let mut won = 0;
    for user in 1..=users {
        // A second apart: pacing spreads the round's packets over the 100 s it has left.
        w.begin_burst(now + user * 1000);
        let mut p = client::payload(&client::request(&TOKEN_KEY, user, 1, expiry, 0));
        won += (w.shake(&mut p) == Ok(Outcome::RedPacket)) as u64;
    }
    if kill {
        drop(workers);
        drop(flushers);
    } else {
        for (f, w) in flushers.into_iter().zip(workers) {
            f.close(w).unwrap();
        }
    }
    assert!(won > 0, "the test needs red packets issued");
    won
}

#[test]
fn seedgen_refuses_a_directory_that_holds_seeds() {
    let d = node("journal", "");
    seedgen(d.path(), 2, 1);
    let before = file_bytes(&d.path().join("seeds"));
    let out = run(shake_bin()
        .args(["seedgen", "--nodes", "1", "--workers", "1", "--activity"])
        .arg(d.path().join("activity.toml"))
        .arg("--out")
        .arg(d.path().join("seeds")));
    assert!(!out.status.success(), "seedgen wrote into a full directory");
    assert!(stderr(&out).contains("not empty"), "{}", stderr(&out));
    assert_eq!(
        file_bytes(&d.path().join("seeds")),
        before,
        "nothing changed"
    );
    // An empty directory is fine, and nothing is left beside it.
    let empty = d.path().join("fresh");
    std::fs::create_dir(&empty).unwrap();
    let a = shake::activity::Activity::load(&d.path().join("activity.toml")).unwrap();
    generate(&a, 1, 1, 1, &empty).unwrap();
    assert!(empty.join("manifest.toml").exists());
    let names: Vec<_> = std::fs::read_dir(d.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().all(|n| !n.contains("seedgen")),
        "a temporary directory was left: {names:?}"
    );
}

#[test]
fn a_shard_the_manifest_does_not_list_stops_serve_and_verify() {
    let d = node("journal", "");
    let a = shake::activity::Activity::load(&d.path().join("activity.toml")).unwrap();
    // Two generations: 2 workers (elsewhere), then 1 worker for the node; the old
    // worker-1.shard is left in the node's directory, sharing packet_ids with the new set.
    let old = d.path().join("old-seeds");
    generate(&a, 1, 2, 1, &old).unwrap();
    seedgen(d.path(), 1, 1);
    let stale = d.path().join("seeds/node-0/worker-1.shard");
    std::fs::copy(old.join("node-0/worker-1.shard"), &stale).unwrap();
    let before = file_bytes(&d.path().join("seeds"));

    let out = run(shake_bin()
        .args(["seeds", "verify"])
        .arg(d.path().join("seeds")));
    assert!(!out.status.success(), "verify passed a stray shard");
    assert!(
        stderr(&out).contains("worker-1.shard") && stderr(&out).contains("not listed"),
        "{}",
        stderr(&out)
    );

    let out = run(shake_bin()
        .args(["serve", "--io", "socket", "--config"])
        .arg(d.config()));
    assert!(!out.status.success(), "serve started with a stray shard");
    let err = stderr(&out);
    assert!(
        err.contains("worker-1.shard") && err.contains("manifest.toml"),
        "{err}"
    );
    assert!(
        !d.path().join("journal").exists(),
        "a journal was created before the refusal"
    );
    assert_eq!(file_bytes(&d.path().join("seeds")), before);

    // A listed name holding another generation's shard: its checksum is not the manifest's.
    std::fs::remove_file(&stale).unwrap();
    std::fs::copy(
        old.join("node-0/worker-0.shard"),
        d.path().join("seeds/node-0/worker-0.shard"),
    )
    .unwrap();
    let out = run(shake_bin()
        .args(["serve", "--io", "socket", "--config"])
        .arg(d.config()));
    assert!(!out.status.success(), "serve started on another generation");
    assert!(stderr(&out).contains("checksum"), "{}", stderr(&out));
    assert!(!d.path().join("journal").exists());
}

/// The refusal `serve` and `recover` must give for a journal directory that cannot explain
/// the shards: both directories named, and the counts.
fn assert_unexplained(err: &str, journal: &str) {
    assert!(
        err.contains("disagree") && err.contains(journal) && err.contains("seeds/node-0"),
        "{err}"
    );
    assert!(err.contains("Nothing was changed"), "{err}");
}

#[test]
fn a_wrong_journal_directory_stops_the_node_and_changes_nothing() {
    for kill in [false, true] {
        let d = node("journal", "");
        seedgen(d.path(), 1, 3);
        let won = win_some(&d.config(), 50, kill);
        let journals_before = file_bytes(&d.path().join("journal"));
        // The operator points the node at an empty (mistyped) journal directory.
        write_config(&d, "journal-typo", "");
        let seeds_before = file_bytes(&d.path().join("seeds"));

        let out = run(shake_bin()
            .args(["serve", "--io", "socket", "--config"])
            .arg(d.config()));
        assert!(
            !out.status.success(),
            "serve started on an empty journal directory (kill: {kill})"
        );
        assert_unexplained(&stderr(&out), "journal-typo");
        assert!(
            stderr(&out).contains(&format!("{won} packets marked")),
            "{}",
            stderr(&out)
        );
        assert!(!d.path().join("journal-typo").exists());
        assert_eq!(file_bytes(&d.path().join("seeds")), seeds_before);
        assert_eq!(file_bytes(&d.path().join("journal")), journals_before);

        // The operator's check says the same, and changes nothing either.
        let out = run(shake_bin().args(["recover", "--config"]).arg(d.config()));
        assert!(!out.status.success());
        assert_unexplained(&stderr(&out), "journal-typo");
        assert_eq!(file_bytes(&d.path().join("seeds")), seeds_before);

        // The right directory again: serve starts, with every claim recovered.
        write_config(&d, "journal", "");
        let out = run(shake_bin().args(["recover", "--config"]).arg(d.config()));
        assert!(out.status.success(), "{}", stderr(&out));
        let server = Server::start_socket_with(&d.config(), None);
        let (status, _) = server.stop();
        assert!(status.success());
        let journaled = common::audit_journals(&d.path().join("journal"), 1);
        assert_eq!(journaled.claims.len() as u64, won);
        assert_eq!(journaled.forfeits, 0);
        common::reconcile(d.path());
    }
}

#[test]
fn a_really_lost_journal_is_forfeited_only_when_the_operator_says_so() {
    let d = node("journal", "");
    seedgen(d.path(), 1, 4);
    let won = win_some(&d.config(), 40, false);
    std::fs::remove_dir_all(d.path().join("journal")).unwrap();
    let out = run(shake_bin().args(["recover", "--config"]).arg(d.config()));
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no journal at all"),
        "{}",
        stderr(&out)
    );

    let out = run(shake_bin()
        .args(["recover", "--forfeit-unjournaled", "--config"])
        .arg(d.config()));
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("forfeited {won} packets")), "{text}");
    // The loss is on the books: every marked packet is a forfeit, and the money reconciles.
    let journaled = common::audit_journals(&d.path().join("journal"), 1);
    assert_eq!(journaled.forfeits, won);
    assert!(journaled.claims.is_empty());
    common::reconcile(d.path());
    // And the node starts normally afterwards.
    let server = Server::start_socket_with(&d.config(), None);
    assert!(server.stop().0.success());
}

#[test]
fn seeds_generated_again_under_an_old_journal_are_refused() {
    let d = node("journal", "");
    seedgen(d.path(), 1, 5);
    win_some(&d.config(), 30, false);
    // Same activity, same seed, regenerated: identical packets, but none marked.
    std::fs::remove_dir_all(d.path().join("seeds")).unwrap();
    seedgen(d.path(), 1, 5);
    let out = run(shake_bin()
        .args(["serve", "--io", "socket", "--config"])
        .arg(d.config()));
    assert!(!out.status.success());
    assert!(stderr(&out).contains("never served"), "{}", stderr(&out));
}

#[cfg(feature = "dpdk")]
mod dpdk {
    use super::*;
    use common::appliance::{dpdk_sections, file_prefix, RuntimeDir};

    fn serve_dpdk(config: &Path, prefix: &str) -> Output {
        let _runtime = RuntimeDir::new(prefix);
        run(shake_bin()
            .args(["serve", "--io", "dpdk", "--config"])
            .arg(config)
            .args(["--", "--no-shconf"]))
    }

    #[test]
    fn dpdk_refuses_a_wrong_journal_directory_before_the_eal_starts() {
        let prefix = file_prefix("money-journal");
        let sections = dpdk_sections(&prefix, "net_null0", 256, 32, 0);
        let d = node("journal", &sections);
        seedgen(d.path(), 1, 6);
        win_some(&d.config(), 20, false);
        write_config(&d, "journal-typo", &sections);
        let seeds_before = file_bytes(&d.path().join("seeds"));
        let out = serve_dpdk(&d.config(), &prefix);
        assert!(!out.status.success());
        assert_unexplained(&stderr(&out), "journal-typo");
        assert!(!d.path().join("journal-typo").exists());
        assert_eq!(file_bytes(&d.path().join("seeds")), seeds_before);
    }

    #[test]
    fn dpdk_config_refused_for_another_reason_changes_no_file() {
        let prefix = file_prefix("money-port");
        // The port names a device the EAL was not given: the appliance fails after EAL init.
        let sections = dpdk_sections(&prefix, "net_null0", 256, 32, 0)
            .replace("name = \"net_null0\"", "name = \"net_null7\"");
        let d = node("journal", &sections);
        seedgen(d.path(), 1, 7);
        let seeds_before = file_bytes(&d.path().join("seeds"));
        let out = serve_dpdk(&d.config(), &prefix);
        assert!(
            !out.status.success(),
            "served on a port that does not exist"
        );
        assert!(stderr(&out).contains("net_null7"), "{}", stderr(&out));
        assert!(
            !d.path().join("journal").exists(),
            "recovery created the journal before DPDK refused the config"
        );
        assert_eq!(file_bytes(&d.path().join("seeds")), seeds_before);

        // Two worker lcores for one shard: refused, nothing changed.
        let sections = dpdk_sections(&prefix, "net_null0", 256, 32, 0)
            .replace("lcores = \"0-1\"", "lcores = \"0@0,1@1,2@1\"");
        write_config(&d, "journal", &sections);
        let out = serve_dpdk(&d.config(), &prefix);
        assert!(!out.status.success(), "served with more lcores than shards");
        assert!(stderr(&out).contains("worker lcores"), "{}", stderr(&out));
        assert!(!d.path().join("journal").exists());
        assert_eq!(file_bytes(&d.path().join("seeds")), seeds_before);
    }
}
