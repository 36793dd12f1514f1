/*
 * One-line forwarders for the DPDK functions Rust cannot call directly: static inline
 * functions, macros and thread-local variables. No logic lives here; each forwarder does
 * exactly what the DPDK function or macro it names does. Safe wrappers belong to the main
 * crate's DPDK layer. Only what that layer calls is here: mbuf fields it reads and writes
 * directly through the bindgen layout, so they need no forwarder.
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
int shake_eth_dev_socket_id(uint16_t port_id);

/* mbuf allocation */
struct rte_mbuf *shake_pktmbuf_alloc(struct rte_mempool *mp);
int shake_pktmbuf_alloc_bulk(struct rte_mempool *mp, struct rte_mbuf **mbufs, unsigned int count);
void shake_pktmbuf_free(struct rte_mbuf *m);

/* rings between lcores (multi/single producer and consumer as the ring was created) */
unsigned int shake_ring_enqueue_burst(struct rte_ring *r, void *const *obj_table, unsigned int n,
				      unsigned int *free_space);
unsigned int shake_ring_dequeue_burst(struct rte_ring *r, void **obj_table, unsigned int n,
				      unsigned int *available);
unsigned int shake_ring_count(const struct rte_ring *r);

/* time, cache and errno */
uint64_t shake_rdtsc(void);
uint64_t shake_get_tsc_hz(void);
void shake_prefetch0(const void *p);
int shake_errno(void);

#endif /* SHAKE_DPDK_SHIM_H */
