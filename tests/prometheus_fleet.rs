//! Fleet observability: the dashboard (`nic-config/fleet/grafana-dashboard.json`) asks only
//! for metrics somebody exports, the Prometheus config (`nic-config/fleet/prometheus.yml`)
//! scrapes a fleet of real nodes found through the file-SD JSON the library writes, and a
//! fleet-wide query through Prometheus's HTTP API adds up to what the nodes say themselves;
//! and the per-sponsor/round money metrics of a node equal what it journaled and answered.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::engines::Engine;
use common::{audit_journals, run_ok, seedgen, unix_s, NodeDir, NodeToml, Server};
use common::{CLAIM_KEY, TOKEN_KEY};
use serde_json::Value;
use shake::client;
use shake::control::Stats;
use shake::counters::{bump, Counters};
use shake::fleet::prometheus::{
    sd_json, sd_json_for_job, write_sd_file, JOB_SHIP, LABEL_EVENT, METRICS,
};
use shake::wire::shake::Outcome;

fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

// ---------------------------------------------------------------------------------------
// What is exported, and what the dashboard asks for.

/// Labels Prometheus puts on every series of a target: its own, and file SD's.
const TARGET_LABELS: &[&str] = &["job", "instance", LABEL_EVENT, "node"];

/// Every metric a node renders, with the label pairs it renders them with; plus the names the
/// fleet's other services export ([`METRICS`]) and Prometheus's own `up`.
struct Exported {
    node: BTreeMap<String, BTreeSet<(String, String)>>,
    other: BTreeSet<String>,
}

impl Exported {
    fn new() -> Exported {
        // A real node's rendering: a worker with a money table and poll-loop cycles (so
        // that every metric the code can render is rendered).
        let c = Counters::with_issued(&[101], &[1]);
        bump(&c.cycles, 10);
        bump(&c.busy_cycles, 5);
        let stats = Stats {
            workers: vec![Arc::new(c)],
            ..Stats::default()
        };
        let mut node: BTreeMap<String, BTreeSet<(String, String)>> = BTreeMap::new();
        for line in stats.prometheus().lines().filter(|l| !l.starts_with('#')) {
            let series = line.rsplit_once(' ').expect("name{labels} value").0;
            let (name, labels) = series.split_once('{').unwrap_or((series, "}"));
            let pairs = node.entry(name.to_owned()).or_default();
            for pair in labels
                .trim_end_matches('}')
                .split(',')
                .filter(|p| !p.is_empty())
            {
                let (k, v) = pair.split_once('=').expect("label=\"value\"");
                pairs.insert((k.to_owned(), v.trim_matches('"').to_owned()));
            }
        }
        let mut other: BTreeSet<String> = METRICS.iter().map(|m| m.to_string()).collect();
        other.insert("up".into());
        Exported { node, other }
    }
}

/// A metric selector of a PromQL expression: the name and its matchers (label, op, value).
#[derive(Debug, PartialEq)]
struct Selector {
    name: String,
    matchers: Vec<(String, String, String)>,
}

/// The metric selectors of a PromQL expression. A small lexer rather than a PromQL parser:
/// strings, ranges (`[5m]`, `[$__range]`, subqueries) and grouping lists (`by (a, b)`) are
/// skipped; an identifier followed by `(` is a function or an aggregation; any other
/// identifier that is not a keyword is a metric name, with the `{...}` after it as its
/// matchers (a bare `{...}` names its metric with `__name__`).
fn selectors(expr: &str) -> Vec<Selector> {
    const GROUPING: &[&str] = &[
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    const KEYWORDS: &[&str] = &["bool", "offset", "and", "or", "unless", "inf", "nan"];
    let b = expr.as_bytes();
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b':';
    let skip_ws = |mut i: usize| {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        i
    };
    // The string literal starting at `i`: the index after it, and its text.
    let string = |i: usize| -> (usize, String) {
        let q = b[i];
        let mut j = i + 1;
        let mut s = String::new();
        while j < b.len() && b[j] != q {
            if b[j] == b'\\' && j + 1 < b.len() {
                j += 1;
            }
            s.push(b[j] as char);
            j += 1;
        }
        (j + 1, s)
    };
    // The matchers of the `{...}` starting at `i`: the index after it, and them.
    let matchers = |mut i: usize| -> (usize, Vec<(String, String, String)>) {
        let mut out = Vec::new();
        i += 1;
        loop {
            i = skip_ws(i);
            if i >= b.len() || b[i] == b'}' {
                return (i + 1, out);
            }
            if b[i] == b',' {
                i += 1;
                continue;
            }
            let start = i;
            while i < b.len() && ident(b[i]) {
                i += 1;
            }
            let label = expr[start..i].to_owned();
            i = skip_ws(i);
            let op_start = i;
            while i < b.len() && b"=!~".contains(&b[i]) {
                i += 1;
            }
            let op = expr[op_start..i].to_owned();
            i = skip_ws(i);
            assert!(
                i < b.len() && b"\"'`".contains(&b[i]),
                "a matcher without a quoted value in {expr:?}"
            );
            let (next, value) = string(i);
            i = next;
            out.push((label, op, value));
        }
    };
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'"' || c == b'\'' || c == b'`' {
            i = string(i).0;
        } else if c == b'[' {
            while i < b.len() && b[i] != b']' {
                i += 1;
            }
            i += 1;
        } else if c == b'{' {
            let (next, m) = matchers(i);
            i = next;
            if let Some((_, _, name)) = m.iter().find(|(l, _, _)| l == "__name__") {
                out.push(Selector {
                    name: name.clone(),
                    matchers: m.clone(),
                });
            }
        } else if c.is_ascii_digit() || c == b'.' {
            // A number or a duration.
            while i < b.len() && (ident(b[i]) || b[i] == b'.') {
                i += 1;
            }
        } else if ident(c) {
            let start = i;
            while i < b.len() && ident(b[i]) {
                i += 1;
            }
            let word = &expr[start..i];
            let next = skip_ws(i);
            // A call, or an aggregation with its grouping first (`sum by (a) (...)`).
            let modifier = ["by", "without"].iter().any(|m| {
                expr[next..].starts_with(m) && !b.get(next + m.len()).is_some_and(|&c| ident(c))
            });
            let call = next < b.len() && b[next] == b'(' || modifier && !GROUPING.contains(&word);
            if call && GROUPING.contains(&word) {
                while i < b.len() && b[i] != b')' {
                    i += 1;
                }
            } else if !call && !KEYWORDS.contains(&word) && !GROUPING.contains(&word) {
                let mut m = Vec::new();
                if next < b.len() && b[next] == b'{' {
                    (i, m) = matchers(next);
                }
                out.push(Selector {
                    name: word.to_owned(),
                    matchers: m,
                });
            }
        } else {
            i += 1;
        }
    }
    out
}

/// Every PromQL expression of a dashboard, with where it is: panel targets (rows included),
/// annotations, and `label_values(SELECTOR, label)` template variables (their selector).
fn expressions(dash: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    fn panels(list: &Value, out: &mut Vec<(String, String)>) {
        for p in list.as_array().into_iter().flatten() {
            let title = p["title"].as_str().unwrap_or("?");
            for t in p["targets"].as_array().into_iter().flatten() {
                if let Some(e) = t["expr"].as_str() {
                    out.push((format!("panel {title:?} {}", t["refId"]), e.to_owned()));
                }
            }
            panels(&p["panels"], out);
        }
    }
    panels(&dash["panels"], &mut out);
    for a in dash["annotations"]["list"].as_array().into_iter().flatten() {
        if let Some(e) = a["expr"].as_str() {
            out.push((format!("annotation {}", a["name"]), e.to_owned()));
        }
    }
    for v in dash["templating"]["list"].as_array().into_iter().flatten() {
        let q = v["query"]["query"].as_str().or(v["query"].as_str());
        if let (Some("query"), Some(q)) = (v["type"].as_str(), q) {
            let inner = q
                .strip_prefix("label_values(")
                .and_then(|r| r.strip_suffix(')'))
                .map(|r| r.rsplit_once(',').map_or(r, |(sel, _label)| sel))
                .unwrap_or(q);
            out.push((format!("variable {}", v["name"]), inner.to_owned()));
        }
    }
    out
}

/// What is wrong with a dashboard's queries: a metric nobody exports, a label a node metric
/// does not have, or a label value it never takes. Empty when every query can find data.
fn problems(dash: &Value, exported: &Exported) -> Vec<String> {
    let mut found = Vec::new();
    let exprs = expressions(dash);
    if exprs.is_empty() {
        found.push("no PromQL expression at all".to_owned());
    }
    for (at, expr) in exprs {
        let sels = selectors(&expr);
        if sels.is_empty() {
            found.push(format!("{at}: names no metric: {expr}"));
        }
        for s in sels {
            if let Some(pairs) = exported.node.get(&s.name) {
                for (label, op, value) in &s.matchers {
                    if TARGET_LABELS.contains(&label.as_str()) {
                        continue;
                    }
                    if !pairs.iter().any(|(k, _)| k == label) {
                        found.push(format!("{at}: {} has no label {label:?}", s.name));
                    } else if op == "="
                        && !value.contains('$')
                        && !pairs.contains(&(label.clone(), value.clone()))
                    {
                        found.push(format!("{at}: {} never has {label}={value:?}", s.name));
                    }
                }
            } else if !exported.other.contains(&s.name) {
                found.push(format!("{at}: nobody exports {:?}: {expr}", s.name));
            }
        }
    }
    found
}

fn dashboard() -> Value {
    let path = repo_file("nic-config/fleet/grafana-dashboard.json");
    let text = std::fs::read_to_string(&path).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn the_lexer_finds_selectors_and_skips_the_rest() {
    let s = selectors(
        r#"sum by (outcome, node) (rate(shake_answers_total{outcome="red_packet", fleet=~"$fleet"}[$__rate_interval])) / on (node) group_left max without (x) (up offset 5m) > bool 0.5 or vector(1e3) + count(label_replace(shake_config_version, "a", "$1", "b", "(.*)"))"#,
    );
    let names: Vec<&str> = s.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["shake_answers_total", "up", "shake_config_version"]);
    assert_eq!(
        s[0].matchers,
        [
            ("outcome".into(), "=".into(), "red_packet".into()),
            ("fleet".into(), "=~".into(), "$fleet".into())
        ]
    );
    assert!(s[1].matchers.is_empty() && s[2].matchers.is_empty());
}

#[test]
fn the_dashboard_asks_only_for_exported_metrics() {
    let dash = dashboard();
    let exported = Exported::new();
    let found = problems(&dash, &exported);
    assert!(found.is_empty(), "{found:#?}");

    // It covers what the event needs: each of these is asked for by some query.
    let asked: BTreeSet<String> = expressions(&dash)
        .iter()
        .flat_map(|(_, e)| selectors(e))
        .map(|s| s.name)
        .collect();
    for m in [
        "shake_answers_total",
        "shake_red_packets_total",
        "shake_red_packet_cents_total",
        "shake_events_total",
        "shake_config_version",
        "shake_ship_lag_seconds",
        "shake_ship_lag_records",
        "shake_fleet_etcd_connected",
    ] {
        assert!(asked.contains(m), "no panel shows {m}");
    }

    // A datasource variable, and every panel and query on it.
    let vars = dash["templating"]["list"].as_array().unwrap();
    assert!(
        vars.iter().any(|v| v["type"] == "datasource"
            && v["query"] == "prometheus"
            && v["name"] == "datasource"),
        "no Prometheus datasource variable"
    );
    let mut ids = BTreeSet::new();
    for p in dash["panels"].as_array().unwrap() {
        assert!(
            ids.insert(p["id"].as_u64().unwrap()),
            "panel id twice: {}",
            p["id"]
        );
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{}", p["title"]);
        let targets = p["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{} has no query", p["title"]);
        for t in targets {
            assert_eq!(t["datasource"]["uid"], "${datasource}", "{}", p["title"]);
        }
    }

    // And the check can fail: a panel that names a metric nobody exports, a label a metric
    // does not have, and a value it never takes (a decision outcome "shed": shed is an event).
    let mut bad = dash.clone();
    let panels = bad["panels"].as_array_mut().unwrap();
    let mut extra = panels
        .iter()
        .find(|p| p["type"] == "timeseries")
        .unwrap()
        .clone();
    extra["title"] = "bad".into();
    extra["targets"] = serde_json::json!([
        {"refId": "A", "expr": "sum(rate(shake_requests_total[1m]))"},
        {"refId": "B", "expr": "sum by (reason) (shake_answers_total{reason=\"x\"})"},
        {"refId": "C", "expr": "sum(shake_decisions_total{outcome=\"shed\"})"},
    ]);
    panels.push(extra);
    let found = problems(&bad, &exported);
    assert_eq!(found.len(), 3, "{found:#?}");
    assert!(
        found[0].contains("nobody exports \"shake_requests_total\""),
        "{found:#?}"
    );
    assert!(found[1].contains("has no label \"reason\""), "{found:#?}");
    assert!(
        found[2].contains("never has outcome=\"shed\""),
        "{found:#?}"
    );
}

#[test]
fn the_prometheus_config_is_valid() {
    let out = run_ok(
        Command::new("promtool")
            .args(["check", "config"])
            .arg(repo_file("nic-config/fleet/prometheus.yml")),
    );
    assert!(out.contains("SUCCESS"), "{out}");
}

// ---------------------------------------------------------------------------------------
// Nodes, and a real Prometheus scraping them.

/// A round with a minute left (see [`fleet_node`]), so pacing lets packets out at once: a
/// worker spreads what is left of a round over the time left of it.
const ROUND: &str = "[[round]]\nid = 1\nstart_s = 0\nduration_s = 3600\nwin_probability = 0.5\ngreeting_probability = 0.2\n";

/// Node `index` of `count` (socket backend, metrics on a port of its own), with the test's
/// two-sponsor activity.
fn fleet_node(index: u32, count: u32) -> NodeDir {
    let node = NodeDir::new(unix_s() - 3540, ROUND, count, "");
    let config = std::fs::read_to_string(node.config()).unwrap();
    assert!(config.contains("index = 0\n"));
    std::fs::write(
        node.config(),
        config.replacen("index = 0\n", &format!("index = {index}\n"), 1),
    )
    .unwrap();
    node
}

/// Money in answers: (sponsor, round) -> (packets, cents).
type Money = BTreeMap<(u32, u32), (u64, u64)>;

/// One shake from each of `users` at `server`, each answer awaited and checked; returns the
/// answers' outcomes and the red packets' money.
fn shake_users(
    server: SocketAddr,
    users: impl Iterator<Item = u64>,
) -> (HashMap<Outcome, u64>, Money) {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let expiry = (unix_s() + 3600) as u32;
    let (mut outcomes, mut money) = (HashMap::new(), Money::new());
    for (seq, user) in users.enumerate() {
        let r = client::request(&TOKEN_KEY, user, seq as u32, expiry, 0);
        s.send_to(&client::payload(&r), server).unwrap();
        let mut buf = [0u8; 128];
        let (n, _) = s.recv_from(&mut buf).expect("an answer");
        let a = client::check_answer(&r, &buf[..n], &CLAIM_KEY).unwrap();
        *outcomes.entry(a.outcome).or_default() += 1;
        if a.outcome == Outcome::RedPacket {
            let e = money.entry((a.sponsor_id, a.round_id)).or_default();
            *e = (e.0 + 1, e.1 + u64::from(a.amount_cents));
        }
    }
    (outcomes, money)
}

/// A node's red packet metrics: (sponsor, round) -> (packets, cents).
fn money_metrics(server: &Server) -> Money {
    let mut m = Money::new();
    for line in server.metrics().lines() {
        let (cents, rest) = if let Some(r) = line.strip_prefix("shake_red_packet_cents_total{") {
            (true, r)
        } else if let Some(r) = line.strip_prefix("shake_red_packets_total{") {
            (false, r)
        } else {
            continue;
        };
        let num = |k: &str| -> u32 {
            rest.split(&format!("{k}=\""))
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap()
                .parse()
                .unwrap()
        };
        let v: u64 = rest.rsplit(' ').next().unwrap().parse().unwrap();
        let e = m.entry((num("sponsor"), num("round"))).or_default();
        if cents {
            e.1 += v;
        } else {
            e.0 += v;
        }
    }
    m
}

/// Waits (bounded) until `f` holds, then returns its last value; panics with `what`.
fn wait_for<T: std::fmt::Debug>(
    what: &str,
    within: Duration,
    mut f: impl FnMut() -> (bool, T),
) -> T {
    let deadline = Instant::now() + within;
    loop {
        let (ok, v) = f();
        if ok {
            return v;
        }
        assert!(Instant::now() < deadline, "{what} after {within:?}: {v:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn red_packet_metrics_equal_the_journal_and_the_answers() {
    // Two workers, seeds and journals; every draw a win; round 2 has not started.
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
[[round]]
id = 2
start_s = 5000
duration_s = 100
win_probability = 1.0
"#,
        unix_s() - 3970
    ));
    NodeToml::new("127.0.0.1", 10_000)
        .port(0)
        .prometheus()
        .activity("seeds = \"seeds\"\njournal = \"journal\"")
        .write(d.path());
    seedgen(d.path(), 2, 7);
    let server = Server::start_socket(&d.config(), 2);
    // Round 1 has 30 s left, which its packets are paced over: new users shake until 20
    // have won (bounded in users and time).
    let (mut answered, mut paid, mut users) = (Money::new(), 0, 0u64);
    let deadline = Instant::now() + Duration::from_secs(20);
    while paid < 20 && users < 20_000 && Instant::now() < deadline {
        let (outcomes, money) = shake_users(server.udp, users + 1..=users + 50);
        users += 50;
        paid += outcomes.get(&Outcome::RedPacket).copied().unwrap_or(0);
        for (k, (p, c)) in money {
            let e = answered.entry(k).or_default();
            *e = (e.0 + p, e.1 + c);
        }
    }
    assert!(paid >= 20, "{paid} red packets for {users} users");
    let metrics = wait_for(
        "the money metrics equal the answers",
        Duration::from_secs(10),
        || {
            let m = money_metrics(&server);
            let nonzero: Money = m
                .iter()
                .filter(|(_, v)| v.0 > 0)
                .map(|(k, v)| (*k, *v))
                .collect();
            (nonzero == answered, m)
        },
    );
    // Every sponsor x round has its series, the round not begun at zero.
    assert_eq!(
        metrics.keys().copied().collect::<Vec<_>>(),
        [(1, 1), (1, 2), (2, 1), (2, 2)]
    );
    assert_eq!((metrics[&(1, 2)], metrics[&(2, 2)]), ((0, 0), (0, 0)));
    let (status, _) = server.stop();
    assert!(status.success());
    // The journals hold the same packets and cents per sponsor.
    let j = audit_journals(&d.path().join("journal"), 2);
    let mut journaled: BTreeMap<u32, (u64, u64)> = BTreeMap::new();
    for &(_, cents, sponsor) in j.claims.values() {
        let e = journaled.entry(sponsor).or_default();
        *e = (e.0 + 1, e.1 + u64::from(cents));
    }
    let mut counted: BTreeMap<u32, (u64, u64)> = BTreeMap::new();
    for (&(sponsor, _), &(p, c)) in &metrics {
        let e = counted.entry(sponsor).or_default();
        *e = (e.0 + p, e.1 + c);
    }
    counted.retain(|_, v| v.0 > 0);
    assert_eq!(counted, journaled);
    assert_eq!(j.claims.len() as u64, paid);
}

/// `GET /api/v1/query` on Prometheus; the parsed JSON answer.
fn query(prom: &Engine, q: &str) -> Value {
    let mut enc = String::new();
    for b in q.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            enc.push(b as char);
        } else {
            enc += &format!("%{b:02X}");
        }
    }
    let mut c = TcpStream::connect(prom.addr()).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        c,
        "GET /api/v1/query?query={enc} HTTP/1.0\r\nHost: localhost\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    c.read_to_string(&mut resp).unwrap();
    let body = resp.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{q}: {e}: {resp}"))
}

/// The single value of an instant vector query, if it has exactly one sample.
fn value(prom: &Engine, q: &str) -> Option<f64> {
    let v = query(prom, q);
    let r = v["data"]["result"].as_array()?;
    (r.len() == 1).then(|| r[0]["value"][1].as_str()?.parse().ok())?
}

/// `label -> value` of a query's samples.
fn by_label(prom: &Engine, q: &str, label: &str) -> BTreeMap<String, f64> {
    let v = query(prom, q);
    v["data"]["result"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| {
            Some((
                s["metric"][label].as_str()?.to_owned(),
                s["value"][1].as_str()?.parse().ok()?,
            ))
        })
        .collect()
}

#[test]
fn a_real_prometheus_sees_the_whole_fleet() {
    const EVENT: &str = "prom-test";
    let nodes: Vec<NodeDir> = (0..3).map(|i| fleet_node(i, 3)).collect();
    let servers: Vec<Server> = nodes
        .iter()
        .map(|n| Server::start_socket(&n.config(), 1))
        .collect();

    // Prometheus from the shipped config, its file-SD paths pointing at this test's files.
    let dir = tempfile::tempdir().unwrap();
    let shipped = std::fs::read_to_string(repo_file("nic-config/fleet/prometheus.yml")).unwrap();
    assert!(
        shipped.contains("scrape_interval: 1s"),
        "the event is scraped every second"
    );
    let mut config = shipped.clone();
    for sub in ["nodes", "ship"] {
        let rel = format!("targets/{sub}/*.json");
        assert!(shipped.contains(&rel), "{rel} in prometheus.yml");
        std::fs::create_dir_all(dir.path().join("targets").join(sub)).unwrap();
        config = config.replace(&rel, &dir.path().join(&rel).display().to_string());
    }
    let entries: Vec<(u32, SocketAddr)> = servers
        .iter()
        .enumerate()
        .map(|(i, s)| (i as u32, s.metrics.expect("metrics endpoint")))
        .collect();
    write_sd_file(
        &dir.path().join("targets/nodes/fleet.json"),
        &entries,
        EVENT,
    )
    .unwrap();
    // No shippers here: an empty list, so the shake-ship job's files exist too.
    std::fs::write(
        dir.path().join("targets/ship/fleet.json"),
        sd_json_for_job(JOB_SHIP, &[], EVENT),
    )
    .unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.path().join("targets/nodes/fleet.json")).unwrap(),
        sd_json(&entries, EVENT)
    );
    let config_path = dir.path().join("prometheus.yml");
    std::fs::write(&config_path, &config).unwrap();
    let checked = run_ok(
        Command::new("promtool")
            .args(["check", "config"])
            .arg(&config_path),
    );
    assert!(
        checked.contains("SUCCESS") && !checked.contains("WARNING"),
        "{checked}"
    );
    let prom = Engine::prometheus(&config);

    // Phones at every node, each at its owner (user mod 3 = node), each answer awaited; new
    // phones until every node has paid some red packets (pacing lets them out over the
    // round's last minute), bounded in phones and time.
    let mut red_packets = 0;
    let mut sent = [0u64; 3];
    for (i, s) in servers.iter().enumerate() {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut paid = 0;
        while paid == 0 && sent[i] < 6_000 && Instant::now() < deadline {
            let (outcomes, _) = shake_users(
                s.udp,
                (sent[i] + 1..=sent[i] + 60).map(|k| 3 * k + i as u64),
            );
            sent[i] += 60;
            assert_eq!(outcomes.values().sum::<u64>(), 60);
            assert_eq!(outcomes.get(&Outcome::Redirect), None);
            paid += outcomes.get(&Outcome::RedPacket).copied().unwrap_or(0);
        }
        assert!(paid > 0, "node {i}: no red packet for {} phones", sent[i]);
        red_packets += paid;
    }
    // The nodes' own totals (TX counts an answer when the kernel took it: wait for all).
    let own: Vec<u64> = servers
        .iter()
        .enumerate()
        .map(|(i, s)| {
            wait_for("a node counts its answers", Duration::from_secs(10), || {
                let n = s.metric("shake_answers_total", "");
                (n == sent[i], n)
            })
        })
        .collect();
    let own_cents: u64 = servers
        .iter()
        .map(|s| s.metric("shake_red_packet_cents_total", ""))
        .sum();
    let own_packets: u64 = servers
        .iter()
        .map(|s| s.metric("shake_red_packets_total", ""))
        .sum();
    assert_eq!(own_packets, red_packets);

    // Fleet-wide through Prometheus's HTTP API, once it has scraped all three since.
    let want: BTreeMap<String, f64> = own
        .iter()
        .enumerate()
        .map(|(i, &n)| (i.to_string(), n as f64))
        .collect();
    let total = own.iter().sum::<u64>() as f64;
    wait_for(
        "Prometheus agrees with the nodes",
        Duration::from_secs(60),
        || {
            let up = value(&prom, "count(up{job=\"shake\"} == 1)");
            let answers = value(&prom, "sum(shake_answers_total)");
            let per_node = by_label(&prom, "sum by (node) (shake_answers_total)", "node");
            let cents = value(&prom, "sum(shake_red_packet_cents_total)");
            let ok = up == Some(3.0)
                && answers == Some(total)
                && per_node == want
                && cents == Some(own_cents as f64);
            (
                ok,
                (
                    up,
                    answers,
                    per_node,
                    cents,
                    prom.log()
                        .lines()
                        .rev()
                        .take(5)
                        .map(str::to_owned)
                        .collect::<Vec<_>>(),
                ),
            )
        },
    );
    // The event's label did not displace the node's own `event` (Prometheus would have
    // renamed it exported_event), and is on every series.
    assert_eq!(
        value(&prom, "count(shake_events_total{event=\"shed\"})"),
        Some(3.0)
    );
    assert_eq!(
        value(&prom, "count(shake_events_total{exported_event=~\".+\"})"),
        None
    );
    assert_eq!(
        by_label(&prom, "count by (fleet) (up)", LABEL_EVENT),
        BTreeMap::from([(EVENT.to_owned(), 3.0)])
    );

    // Every query of the dashboard is valid PromQL to this Prometheus, with Grafana's
    // variables as Grafana would fill them in.
    for (at, expr) in expressions(&dashboard()) {
        let q = expr
            .replace("$__rate_interval", "5s")
            .replace("$__range", "1m")
            .replace("$fleet", ".*");
        let v = query(&prom, &q);
        assert_eq!(v["status"], "success", "{at}: {q}: {v}");
    }
    drop(prom);
    for s in servers {
        let (status, _) = s.stop();
        assert!(status.success());
    }
}
