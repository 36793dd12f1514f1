//! Prometheus for a fleet: the file-based service discovery that `shake fleet status
//! --prometheus-sd FILE` writes, and the names of the metrics the fleet's own services export.
//!
//! Prometheus finds the nodes through files (`file_sd_configs` in
//! `nic-config/fleet/prometheus.yml`) rather than through a discovery plugin of its own for
//! etcd: the registry is already in etcd, `shake fleet status` reads it, and a JSON file is
//! the one discovery every Prometheus version takes, re-read when it changes.
//!
//! [`METRICS`] lists what the shipper and a fleet node's control plane export, so that the
//! dashboard's test (`tests/prometheus_fleet.rs`) can check every query against names that
//! exist: the node's datapath metrics it renders from a real node's counters; these it takes
//! from here, and whoever adds or renames one of them changes this list with it.

use std::net::SocketAddr;
use std::path::Path;

/// Metrics exported beside the datapath's: the shipper's (`shake ship`: claims shipped,
/// lag, connection, errors) and a fleet node's control plane (etcd connection, config lag).
/// The node's own counters (`shake_answers_total`, `shake_red_packets_total`, ...) are not
/// listed: [`Stats::prometheus`](crate::control::Stats::prometheus) is their definition.
pub const METRICS: &[&str] = &[
    // shake ship, one series per worker journal unless said otherwise.
    "shake_ship_records_total",
    "shake_ship_lag_records",
    "shake_ship_lag_seconds",
    // 0/1, per shipper.
    "shake_ship_connected",
    // By kind.
    "shake_ship_errors_total",
    // A fleet node's control plane: 0/1, and seconds its applied config is behind etcd.
    "shake_fleet_etcd_connected",
    "shake_fleet_config_lag_seconds",
];

/// The target label that names the event (`[fleet] name`). Not `event`: the node's own
/// `shake_events_total` has an `event` label (shed, pacing_wait, ...), and a target label of
/// the same name would make Prometheus rename the node's to `exported_event`, so that
/// `shake_events_total{event="shed"}` would find nothing.
pub const LABEL_EVENT: &str = "fleet";

/// The file-SD JSON for an event's nodes: one target group per node, `(node index, its
/// metrics address)`, labelled `job="shake"`, `fleet` (the event's name, [`LABEL_EVENT`]) and
/// `node` (the index, so a dashboard shows node numbers rather than addresses).
pub fn sd_json(entries: &[(u32, SocketAddr)], event: &str) -> String {
    sd_json_for_job(JOB_NODES, entries, event)
}

/// The scrape job of the nodes in `nic-config/fleet/prometheus.yml`.
pub const JOB_NODES: &str = "shake";
/// The scrape job of the claim shippers.
pub const JOB_SHIP: &str = "shake-ship";

/// [`sd_json`] for another job, e.g. [`JOB_SHIP`] with the shippers' metrics addresses.
pub fn sd_json_for_job(job: &str, entries: &[(u32, SocketAddr)], event: &str) -> String {
    let groups: Vec<serde_json::Value> = entries
        .iter()
        .map(|(node, addr)| {
            serde_json::json!({
                "targets": [addr.to_string()],
                "labels": {"job": job, LABEL_EVENT: event, "node": node.to_string()},
            })
        })
        .collect();
    serde_json::Value::Array(groups).to_string()
}

/// Writes [`sd_json`] to `path` whole: into a temporary file beside it, then renamed over it,
/// so Prometheus, which re-reads the file when it changes, never reads half of one.
pub fn write_sd_file(
    path: &Path,
    entries: &[(u32, SocketAddr)],
    event: &str,
) -> std::io::Result<()> {
    write_sd_file_for_job(path, JOB_NODES, entries, event)
}

/// [`write_sd_file`] for another job ([`JOB_SHIP`]).
pub fn write_sd_file_for_job(
    path: &Path,
    job: &str,
    entries: &[(u32, SocketAddr)],
    event: &str,
) -> std::io::Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    std::fs::write(&tmp, sd_json_for_job(job, entries, event))?;
    std::fs::rename(&tmp, path)
}

/// Writes the targets of a fleet's nodes and shippers under `dir` (the directory beside
/// `prometheus.yml` that its `file_sd_configs` read): `dir/nodes/EVENT.json` and
/// `dir/ship/EVENT.json`.
pub fn write_fleet_targets(
    dir: &Path,
    event: &str,
    nodes: &[(u32, SocketAddr)],
    shippers: &[(u32, SocketAddr)],
) -> std::io::Result<()> {
    for (sub, job, entries) in [("nodes", JOB_NODES, nodes), ("ship", JOB_SHIP, shippers)] {
        let d = dir.join(sub);
        std::fs::create_dir_all(&d)?;
        write_sd_file_for_job(&d.join(format!("{event}.json")), job, entries, event)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sd_json_is_a_target_group_per_node() {
        let entries = [
            (0, "127.0.0.1:9100".parse().unwrap()),
            (7, "[::1]:9107".parse().unwrap()),
        ];
        let v: serde_json::Value = serde_json::from_str(&sd_json(&entries, "gala-2027")).unwrap();
        let groups = v.as_array().expect("an array of target groups");
        assert_eq!(groups.len(), 2);
        for (g, (node, addr)) in groups.iter().zip(&entries) {
            assert_eq!(g["targets"], serde_json::json!([addr.to_string()]));
            assert_eq!(
                g["labels"],
                serde_json::json!({"job": "shake", "fleet": "gala-2027", "node": node.to_string()})
            );
            // Prometheus takes only these two keys, and label values only as strings.
            assert_eq!(g.as_object().unwrap().len(), 2);
        }
        assert_eq!(groups[1]["targets"][0], "[::1]:9107");
        assert_eq!(sd_json(&[], "e"), "[]");
        let ship: serde_json::Value =
            serde_json::from_str(&sd_json_for_job(JOB_SHIP, &entries[..1], "e")).unwrap();
        assert_eq!(ship[0]["labels"]["job"], "shake-ship");
    }

    #[test]
    fn sd_file_is_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nodes.json");
        std::fs::write(&path, "stale").unwrap();
        let entries = [(3, "127.0.0.1:1".parse().unwrap())];
        write_sd_file(&path, &entries, "e").unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            sd_json(&entries, "e")
        );
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary left"
        );
    }

    #[test]
    fn metric_names_are_prometheus_names() {
        for m in METRICS {
            assert!(
                m.starts_with("shake_")
                    && m.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{m}"
            );
        }
    }
}
