//! config_version never decreases on a node, across reloads and restarts (SPEC section 4):
//! clients compare it with theirs to learn that their config is stale, so a version that went
//! backwards after a restart would hide every later change from a client holding the higher
//! number.

mod common;

use std::io::BufRead;

use common::{seedgen, unix_s, NodeDir, NodeToml, Server};

/// The number after "config_version " in a line.
fn version_in(line: &str) -> u32 {
    line.split("config_version ")
        .nth(1)
        .and_then(|s| s.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no config_version in {line:?}"))
}

/// Reads stdout lines until one contains `what`; the server prints it within moments of the
/// signal, and a dead server ends the read.
fn wait_line(server: &mut Server, what: &str) -> String {
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            server.stdout.read_line(&mut line).unwrap() > 0,
            "server exited before printing {what:?}"
        );
        if line.contains(what) {
            return line;
        }
    }
}

fn first_version(config: &std::path::Path) -> (Server, u32) {
    let server = Server::start_socket_with(config, None);
    // The serving line, already read by start_socket_with, is not kept: ask the metrics.
    let v = server
        .metrics()
        .lines()
        .find(|l| l.starts_with("shake_config_version "))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u32>().unwrap())
        .expect("shake_config_version in the metrics");
    (server, v)
}

#[test]
fn config_version_never_goes_backwards_across_reloads_and_restarts() {
    let d = NodeDir::with_activity(&format!(
        r#"
[activity]
id = 51
name = "versions"
epoch = {}
[[sponsor]]
id = 1
budget_cents = 10000
packets = 100
[[round]]
id = 1
start_s = 0
duration_s = 600
win_probability = 0.1
"#,
        unix_s()
    ));
    let config = NodeToml::new("127.0.0.1", 10_000)
        .port(0)
        .prometheus()
        .activity(r#"seeds = "seeds""#)
        .activity(r#"journal = "journal""#)
        .write(d.path());
    seedgen(d.path(), 1, 1);

    let (mut server, mut last) = first_version(&config);
    // Many reloads within a second or two: each version above the one before, and soon
    // ahead of the clock.
    for _ in 0..6 {
        server.signal(1); // SIGHUP
        let v = version_in(&wait_line(&mut server, "reloaded, config_version"));
        assert!(v > last, "reload gave {v} after {last}");
        last = v;
    }
    assert!(server.stop().0.success());
    // A restart right away: still above every version served before.
    let (server, v) = first_version(&config);
    assert!(
        v > last,
        "restarted with config_version {v}, served {last} before"
    );
    assert!(server.stop().0.success());
    // Also after a SIGKILL.
    let (mut server, v1) = first_version(&config);
    server.signal(1);
    let v2 = version_in(&wait_line(&mut server, "reloaded, config_version"));
    assert!(v2 > v1);
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    let (server, v3) = first_version(&config);
    assert!(v3 > v2, "after SIGKILL: {v3}, served {v2} before");
    assert!(server.stop().0.success());
}
