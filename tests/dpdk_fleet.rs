//! A DPDK node is a fleet member like any other (the lifecycle is the same for every
//! backend): the appliance on a net_null port registers in etcd, applies a push between
//! bursts with config_version = the revision, and leaves the registry at its stop.
//! `--no-pci --no-huge --no-shconf`, its own `--file-prefix`.
#![cfg(all(feature = "dpdk", feature = "fleet"))]

mod common;

use std::process::Command;
use std::time::Duration;

use common::appliance::{dpdk_sections, file_prefix, Appliance};
use common::engines::Engine;
use common::{run_ok, shake_bin, unix_s, NodeDir, NodeToml};

#[test]
fn a_dpdk_node_registers_applies_a_push_and_leaves_at_its_stop() {
    let etcd = Engine::etcd();
    let activity = format!(
        "[activity]\nid = 23\nname = \"dpdk fleet\"\nepoch = {}\n[[sponsor]]\nid = 1\n\
         budget_cents = 10000\npackets = 100\n[[round]]\nid = 1\nstart_s = 0\nduration_s = 600\n\
         win_probability = 0.1\n",
        unix_s()
    );
    let node = NodeDir::with_activity(&activity);
    let prefix = file_prefix("fleet-node");
    let config = NodeToml::new("10.99.7.1", 1_000)
        .prometheus()
        .activity(r#"journal = "journal""#)
        .extra(&format!(
            "\n[fleet]\nname = \"t\"\netcd = [\"{}\"]\n",
            etcd.url()
        ))
        .extra(&dpdk_sections(&prefix, "net_null0", 512, 32, 100))
        .write(node.path());
    let app = Appliance::start(&config, &prefix, None, true);
    let doc = node.path().join("live.toml");
    std::fs::write(&doc, activity + "\n[live]\ncalibration_ms = 2500\n").unwrap();
    let out = run_ok(
        Command::new(shake_bin())
            .args(["fleet", "push", "--config"])
            .arg(&config)
            .arg(&doc),
    );
    let rev: u64 = out
        .split("as revision ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("{out}"));
    let (text, applied) = app.wait_metrics(Duration::from_secs(20), |t| {
        t.lines()
            .any(|l| l == format!("shake_config_version {rev}"))
    });
    assert!(applied, "revision {rev} not applied:\n{text}");
    let status = run_ok(
        Command::new(shake_bin())
            .args(["fleet", "status", "--json", "--config"])
            .arg(&config),
    );
    let v: serde_json::Value = serde_json::from_str(&status).unwrap();
    let reg = &v["nodes"][0]["registration"];
    assert_eq!(reg["revision"].as_u64(), Some(rev), "{v}");
    assert!(reg["serving"].as_str().unwrap().starts_with("dpdk"), "{v}");
    let (st, _) = app.stop(Duration::from_secs(20));
    assert!(st.success());
    // A missing node: exit code 1, and named.
    let out = Command::new(shake_bin())
        .args(["fleet", "status", "--json", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["missing"], serde_json::json!([0]), "{v}");
}
