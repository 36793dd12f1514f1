/*
 * One-line forwarders for the DPDK functions Rust cannot call directly: static inline
 * functions, macros and thread-local variables. No logic lives here; each forwarder does
 * exactly what the DPDK function or macro it names does. Safe wrappers belong to the main
 * crate's DPDK layer.
 */
#ifndef SHAKE_DPDK_SHIM_H
#define SHAKE_DPDK_SHIM_H

#include <stdint.h>

#include <rte_config.h>
#include <rte_cycles.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_prefetch.h>
#include <rte_ring.h>

/* ethdev fast path */
uint16_t shake_eth_rx_burst(uint16_t port_id, uint16_t queue_id, struct rte_mbuf **rx_pkts,
			    uint16_t nb_pkts);
uint16_t shake_eth_tx_burst(uint16_t port_id, uint16_t queue_id, struct rte_mbuf **tx_pkts,
			    uint16_t nb_pkts);
uint16_t shake_eth_tx_prepare(uint16_t port_id, uint16_t queue_id, struct rte_mbuf **tx_pkts,
			      uint16_t nb_pkts);
int shake_eth_dev_socket_id(uint16_t port_id);

/* mbuf allocation */
struct rte_mbuf *shake_pktmbuf_alloc(struct rte_mempool *mp);
int shake_pktmbuf_alloc_bulk(struct rte_mempool *mp, struct rte_mbuf **mbufs, unsigned int count);
void shake_pktmbuf_free(struct rte_mbuf *m);

/* mbuf data area */
uint8_t *shake_pktmbuf_mtod(struct rte_mbuf *m);
uint16_t shake_pktmbuf_data_len(const struct rte_mbuf *m);
void shake_pktmbuf_set_data_len(struct rte_mbuf *m, uint16_t len);
uint32_t shake_pktmbuf_pkt_len(const struct rte_mbuf *m);
void shake_pktmbuf_set_pkt_len(struct rte_mbuf *m, uint32_t len);
uint16_t shake_pktmbuf_headroom(const struct rte_mbuf *m);
uint16_t shake_pktmbuf_tailroom(const struct rte_mbuf *m);
char *shake_pktmbuf_append(struct rte_mbuf *m, uint16_t len);
char *shake_pktmbuf_prepend(struct rte_mbuf *m, uint16_t len);
char *shake_pktmbuf_adj(struct rte_mbuf *m, uint16_t len);
int shake_pktmbuf_trim(struct rte_mbuf *m, uint16_t len);
void shake_pktmbuf_reset_headroom(struct rte_mbuf *m);
void shake_pktmbuf_reset(struct rte_mbuf *m);

/* mbuf metadata: receive port, offload flags and the lengths checksum offload reads */
uint16_t shake_mbuf_port(const struct rte_mbuf *m);
uint64_t shake_mbuf_ol_flags(const struct rte_mbuf *m);
void shake_mbuf_set_ol_flags(struct rte_mbuf *m, uint64_t ol_flags);
void shake_mbuf_set_l2_len(struct rte_mbuf *m, uint16_t len);
void shake_mbuf_set_l3_len(struct rte_mbuf *m, uint16_t len);
void shake_mbuf_set_l4_len(struct rte_mbuf *m, uint16_t len);

/* rings between lcores (multi/single producer and consumer as the ring was created) */
unsigned int shake_ring_enqueue_burst(struct rte_ring *r, void *const *obj_table, unsigned int n,
				      unsigned int *free_space);
unsigned int shake_ring_dequeue_burst(struct rte_ring *r, void **obj_table, unsigned int n,
				      unsigned int *available);
unsigned int shake_ring_count(const struct rte_ring *r);

/* lcore, time, cache and errno */
unsigned int shake_lcore_id(void);
uint64_t shake_rdtsc(void);
uint64_t shake_get_tsc_cycles(void);
uint64_t shake_get_tsc_hz(void);
void shake_prefetch0(const void *p);
int shake_errno(void);

#endif /* SHAKE_DPDK_SHIM_H */
