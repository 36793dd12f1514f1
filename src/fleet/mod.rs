//! The fleet: many nodes run as one event, on proven engines rather than home-made ones.
//!
//! - **etcd** holds the event's live config (one key per activity, pushed by
//!   `shake fleet push` with compare-and-swap on its revision) and the node registry (one key
//!   per node under a lease, so a dead node disappears by itself). A node's control plane
//!   watches its activity's key and hands each revision to the workers between bursts, exactly
//!   as SIGHUP does on a node of its own; `config_version` is then the key's etcd revision, the
//!   same on every node.
//! - **NATS JetStream** carries the fund flow: every claim journal record, shipped exactly once
//!   to one stream that the payment system consumes with acknowledgements.
//! - **Prometheus** scrapes every node's metrics endpoint; the dashboard is in `nic-config/fleet/`.
//!
//! All of it runs on the control side of a node (a tokio runtime on its own thread) or beside
//! it (`shake ship`), never on a worker: a worker only ever sees a new `Arc<Live>` between
//! bursts, as it does for SIGHUP. A node without `[fleet]` runs exactly as before.
//!
//! The engines' clients (`etcd`, `ship`, `stream`) are behind the `fleet` feature (default):
//! what the rest of the crate needs of the fleet without them (the names, the stream's
//! messages as data for [`crate::reconcile`], following a journal, Prometheus's files) is
//! here regardless, so that a build without the feature (the fuzz targets) compiles no gRPC,
//! HTTP/2 or TLS.
//!
//! [`Names`] is the one place that spells keys, subjects and the stream's name, so that the
//! node, the shipper, `shake fleet`, `shake pay` and `shake reconcile` agree on them.

#[cfg(feature = "fleet")]
pub mod etcd;
pub mod follow;
pub mod message;
pub mod prometheus;
#[cfg(feature = "fleet")]
pub mod ship;
#[cfg(feature = "fleet")]
pub mod stream;

use crate::node_config::FleetSection;

/// Where an event's state lives in etcd and NATS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    event: String,
}

impl Names {
    /// For a `[fleet]` section (whose name the config has checked).
    pub fn of(fleet: &FleetSection) -> Names {
        Names::new(&fleet.name)
    }

    /// For an event name of letters, digits, '-' and '_' (see [`FleetSection`]).
    pub fn new(event: &str) -> Names {
        Names {
            event: event.to_string(),
        }
    }

    pub fn event(&self) -> &str {
        &self.event
    }

    /// The etcd key holding an activity's live config.
    pub fn live_key(&self, activity: u32) -> String {
        format!("/shake/{}/activities/{activity}/live", self.event)
    }

    /// The etcd prefix of the node registry.
    pub fn nodes_prefix(&self) -> String {
        format!("/shake/{}/nodes/", self.event)
    }

    /// The etcd key a node registers under (zero-padded, so keys list in node order).
    pub fn node_key(&self, index: u32) -> String {
        format!("{}{index:05}", self.nodes_prefix())
    }

    /// The JetStream stream of the event's claims.
    pub fn stream(&self) -> String {
        format!("shake-{}-claims", self.event)
    }

    /// The subject of one worker's journal: one subject per journal, so that the stream's
    /// last message on it says where shipping resumes.
    pub fn claims_subject(&self, activity: u32, node: u32, worker: u32) -> String {
        format!("shake.{}.claims.{activity}.{node}.{worker}", self.event)
    }

    /// Every claims subject of the event.
    pub fn claims_subjects(&self) -> String {
        format!("shake.{}.claims.>", self.event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_under_the_event() {
        let n = Names::new("gala-2027");
        assert_eq!(n.live_key(7), "/shake/gala-2027/activities/7/live");
        assert_eq!(n.node_key(3), "/shake/gala-2027/nodes/00003");
        assert!(n.node_key(3).starts_with(&n.nodes_prefix()));
        assert_eq!(n.stream(), "shake-gala-2027-claims");
        assert_eq!(n.claims_subject(1, 2, 3), "shake.gala-2027.claims.1.2.3");
        assert!(n.claims_subjects().starts_with("shake.gala-2027.claims."));
    }
}
