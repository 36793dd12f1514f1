// SPDX-License-Identifier: MIT OR Apache-2.0
//
// The XDP program of an AF_XDP node that shares its interface with the kernel: it redirects
// SHAKE/1 (UDP to the node's port, over IPv4 or IPv6, untagged or with one VLAN tag) to the
// AF_XDP socket bound to the frame's queue, and passes everything else to the kernel, so
// ARP, NDP, ping, SSH, DHCP and the node's own metrics keep working on the same interface.
// DPDK's default program (libxdp's xsk_def_prog) would redirect every frame of the queue.
//
// Build (needs clang and libbpf-dev; `make xdp-filter` does this into build/):
//   clang -O2 -g -target bpf -DSHAKE_PORT=7000 -I/usr/include/$(uname -m)-linux-gnu \
//         -c nic-config/afxdp-filter.c -o build/afxdp-filter.o
// and name it in the port's vdev (relative paths are relative to the node config):
//   vdevs = ["net_af_xdp0,iface=eth1,xdp_prog=/usr/lib/shake/afxdp-filter.o"]
//
// SHAKE_PORT must be the config's node.port. The node's address must be one the kernel has
// on the interface: the kernel answers ARP/NDP and ping for it (with the interface's MAC,
// which is the port's), the node answers SHAKE/1. A frame for the port that arrives on a
// queue without a socket (not among the vdev's start_queue..start_queue+queue_count) goes
// to the kernel too, which has nothing listening there.
//
// DPDK 22.11's PMD loads this object, takes its first program, attaches it to the
// interface and puts each queue's socket into the map that must be called xsks_map.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#ifndef SHAKE_PORT
#define SHAKE_PORT 7000
#endif

// Queue index -> AF_XDP socket, filled by the PMD; more entries than any NIC has queues.
struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, __u32);
} xsks_map SEC(".maps");

struct vlan_hdr {
	__be16 tci;
	__be16 proto;
};

SEC("xdp")
int shake_filter(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct udphdr *udp;
	void *l3;
	__be16 proto;

	if ((void *)(eth + 1) > end)
		return XDP_PASS;
	proto = eth->h_proto;
	l3 = eth + 1;
	if (proto == bpf_htons(ETH_P_8021Q) || proto == bpf_htons(ETH_P_8021AD)) {
		struct vlan_hdr *vlan = l3;

		if ((void *)(vlan + 1) > end)
			return XDP_PASS;
		proto = vlan->proto;
		l3 = vlan + 1;
	}
	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = l3;

		if ((void *)(ip + 1) > end || ip->protocol != IPPROTO_UDP || ip->ihl < 5)
			return XDP_PASS;
		// A later fragment carries no UDP header: the kernel reassembles or drops it.
		if (ip->frag_off & bpf_htons(0x1fff))
			return XDP_PASS;
		udp = (void *)ip + ip->ihl * 4;
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = l3;

		// SHAKE/1 comes without extension headers; anything else is the kernel's.
		if ((void *)(ip6 + 1) > end || ip6->nexthdr != IPPROTO_UDP)
			return XDP_PASS;
		udp = (void *)(ip6 + 1);
	} else {
		return XDP_PASS;
	}
	if ((void *)(udp + 1) > end || udp->dest != bpf_htons(SHAKE_PORT))
		return XDP_PASS;
	// XDP_PASS when the queue has no socket.
	return bpf_redirect_map(&xsks_map, ctx->rx_queue_index, XDP_PASS);
}

char _license[] SEC("license") = "Dual MIT/GPL";
