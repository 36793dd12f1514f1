//! Which multicast frames a port lets in, so that NDP reaches the node on a real NIC.
//!
//! A phone (or a router) that resolves the node's IPv6 address sends its Neighbor
//! Solicitation to the address's solicited-node multicast group (RFC 4861 7.2.2), an Ethernet
//! address 33:33:ff:xx:xx:xx that a NIC drops unless told to accept it. So a port of a node
//! with an IPv6 address puts the groups of its two addresses (the global one and the port's
//! link-local one) on the device's multicast address list; a device without a list gets
//! all-multicast instead; and a device with neither (most virtual devices: they filter
//! nothing anyway) is recorded as such, not refused, and the operator is told on the port's
//! start-up line. The choice is a pure function of what the two calls return, tested here
//! without a device; [`Port::accept_multicast`](super::Port::accept_multicast) makes the calls.
//!
//! All-nodes (ff02::1) is not on the list: the node answers nothing sent there.

use crate::frame::Ipv6Addrs;
use crate::wire::ipv6::{multicast_mac, solicited_node};

/// How a port receives the solicited-node multicast groups of the node's IPv6 addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Multicast {
    /// The node has no IPv6 address: the device's multicast filter is left as it was.
    Unchanged,
    /// The device's multicast address list holds these groups (and nothing else).
    List(Vec<[u8; 6]>),
    /// The device took no list (`list` says why) and lets every multicast frame in.
    All { list: String },
    /// Neither could be set; what each call said. Whether NDP reaches the node is up to
    /// the device: virtual devices and promiscuous ports let everything in, a NIC may not.
    Unset { list: String, all: String },
}

/// The Ethernet addresses of the solicited-node multicast groups of `addrs`: the global
/// address's, then the link-local one's, once each (they are one group when the two
/// addresses end in the same 24 bits).
pub fn ndp_groups(addrs: &Ipv6Addrs) -> Vec<[u8; 6]> {
    let mut groups = vec![multicast_mac(solicited_node(addrs.global))];
    let link = multicast_mac(solicited_node(addrs.link_local));
    if !groups.contains(&link) {
        groups.push(link);
    }
    groups
}

/// The mode a port ends up in for `groups`, given how the device answers the two calls,
/// tried in order: `set_list` (`rte_eth_dev_set_mc_addr_list`) and, only if that fails,
/// `set_all` (`rte_eth_allmulticast_enable`). Each returns 0 or `-errno`; `text` names an
/// errno. No groups (no IPv6 address): nothing is called.
pub fn choose(
    groups: &[[u8; 6]],
    set_list: impl FnOnce() -> i32,
    set_all: impl FnOnce() -> i32,
    text: impl Fn(i32) -> String,
) -> Multicast {
    if groups.is_empty() {
        return Multicast::Unchanged;
    }
    let ret = set_list();
    if ret >= 0 {
        return Multicast::List(groups.to_vec());
    }
    let list = text(-ret);
    match set_all() {
        ret if ret >= 0 => Multicast::All { list },
        ret => Multicast::Unset {
            list,
            all: text(-ret),
        },
    }
}

impl Multicast {
    /// For the port's start-up line (", ..." to append; empty when unchanged), e.g.
    /// ", NDP multicast list 33:33:ff:00:00:02 33:33:ff:12:34:56".
    pub fn describe(&self) -> String {
        match self {
            Multicast::Unchanged => String::new(),
            Multicast::List(groups) => {
                let groups: Vec<String> = groups.iter().map(|g| mac_text(*g)).collect();
                format!(", NDP multicast list {}", groups.join(" "))
            }
            Multicast::All { list } => {
                format!(", NDP all-multicast (no multicast list: {list})")
            }
            Multicast::Unset { list, all } => {
                format!(", NDP multicast NOT SET (multicast list: {list}; all-multicast: {all})")
            }
        }
    }

    /// The warning to print at start-up for a port where neither could be set.
    pub fn warning(&self, port: &str) -> Option<String> {
        match self {
            Multicast::Unset { .. } => Some(format!(
                "shake: warning: port {port} accepts neither a multicast list nor all-multicast: \
                 Neighbor Solicitations reach the node only if the device lets multicast in \
                 (virtual devices do; on a NIC, set promiscuous = true in its [[port]])"
            )),
            _ => None,
        }
    }
}

/// "33:33:ff:00:00:02".
fn mac_text(m: [u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

#[cfg(test)]
mod test {
    use super::*;
    use std::cell::Cell;

    const MAC: [u8; 6] = [0x02, 0x00, 0x5e, 0x12, 0x34, 0x56];
    /// fd00:5a::2
    const GLOBAL: [u8; 16] = [0xfd, 0, 0, 0x5a, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

    fn text(errno: i32) -> String {
        format!("errno {errno}")
    }

    #[test]
    fn groups_are_the_solicited_node_macs_of_the_global_and_link_local_addresses() {
        let addrs = Ipv6Addrs::new(GLOBAL, None, MAC);
        // Global ::2 -> ff02::1:ff00:2; link-local fe80::ff:fe12:3456 (from the MAC) ->
        // ff02::1:ff12:3456.
        assert_eq!(
            ndp_groups(&addrs),
            vec![
                [0x33, 0x33, 0xff, 0x00, 0x00, 0x02],
                [0x33, 0x33, 0xff, 0x12, 0x34, 0x56]
            ]
        );
        // A configured link-local address replaces the derived one.
        let mut ll = [0u8; 16];
        ll[..2].copy_from_slice(&[0xfe, 0x80]);
        ll[13..].copy_from_slice(&[0xab, 0xcd, 0xef]);
        let addrs = Ipv6Addrs::new(GLOBAL, Some(ll), MAC);
        assert_eq!(ndp_groups(&addrs)[1], [0x33, 0x33, 0xff, 0xab, 0xcd, 0xef]);
    }

    #[test]
    fn addresses_that_share_their_low_24_bits_are_one_group() {
        let mut ll = [0u8; 16];
        ll[..2].copy_from_slice(&[0xfe, 0x80]);
        ll[15] = 2;
        let addrs = Ipv6Addrs::new(GLOBAL, Some(ll), MAC);
        assert_eq!(
            ndp_groups(&addrs),
            vec![[0x33, 0x33, 0xff, 0x00, 0x00, 0x02]]
        );
    }

    #[test]
    fn the_list_where_the_device_has_one_and_all_multicast_is_not_touched() {
        let groups = ndp_groups(&Ipv6Addrs::new(GLOBAL, None, MAC));
        let all_called = Cell::new(false);
        let mode = choose(
            &groups,
            || 0,
            || {
                all_called.set(true);
                0
            },
            text,
        );
        assert_eq!(mode, Multicast::List(groups));
        assert!(!all_called.get());
    }

    #[test]
    fn all_multicast_where_the_device_has_no_list() {
        let groups = ndp_groups(&Ipv6Addrs::new(GLOBAL, None, MAC));
        let mode = choose(&groups, || -libc::ENOTSUP, || 0, text);
        assert_eq!(
            mode,
            Multicast::All {
                list: text(libc::ENOTSUP)
            }
        );
        assert!(mode.warning("p").is_none());
    }

    #[test]
    fn neither_is_recorded_with_both_reasons_and_warned_about() {
        let groups = ndp_groups(&Ipv6Addrs::new(GLOBAL, None, MAC));
        let mode = choose(&groups, || -libc::ENOTSUP, || -libc::EIO, text);
        assert_eq!(
            mode,
            Multicast::Unset {
                list: text(libc::ENOTSUP),
                all: text(libc::EIO)
            }
        );
        let line = mode.describe();
        assert!(line.contains("NOT SET"), "{line}");
        assert!(line.contains(&text(libc::EIO)), "{line}");
        let warning = mode.warning("net_null0").unwrap();
        assert!(warning.contains("port net_null0"), "{warning}");
    }

    #[test]
    fn a_node_without_ipv6_calls_nothing_and_says_nothing() {
        let called = Cell::new(false);
        let mode = choose(
            &[],
            || {
                called.set(true);
                0
            },
            || {
                called.set(true);
                0
            },
            text,
        );
        assert_eq!(mode, Multicast::Unchanged);
        assert!(!called.get());
        assert_eq!(mode.describe(), "");
        assert!(mode.warning("p").is_none());
    }

    #[test]
    fn the_list_is_described_group_by_group() {
        let mode = Multicast::List(vec![
            [0x33, 0x33, 0xff, 0x00, 0x00, 0x02],
            [0x33, 0x33, 0xff, 0x12, 0x34, 0x56],
        ]);
        assert_eq!(
            mode.describe(),
            ", NDP multicast list 33:33:ff:00:00:02 33:33:ff:12:34:56"
        );
    }
}
