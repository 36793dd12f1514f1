/* See shim.h: one-line forwarders only. */
#include "shim.h"

uint16_t shake_eth_rx_burst(uint16_t port_id, uint16_t queue_id, struct rte_mbuf **rx_pkts,
			    uint16_t nb_pkts)
{
	return rte_eth_rx_burst(port_id, queue_id, rx_pkts, nb_pkts);
}

uint16_t shake_eth_tx_burst(uint16_t port_id, uint16_t queue_id, struct rte_mbuf **tx_pkts,
			    uint16_t nb_pkts)
{
	return rte_eth_tx_burst(port_id, queue_id, tx_pkts, nb_pkts);
}

int shake_eth_dev_socket_id(uint16_t port_id)
{
	return rte_eth_dev_socket_id(port_id);
}

struct rte_mbuf *shake_pktmbuf_alloc(struct rte_mempool *mp)
{
	return rte_pktmbuf_alloc(mp);
}

int shake_pktmbuf_alloc_bulk(struct rte_mempool *mp, struct rte_mbuf **mbufs, unsigned int count)
{
	return rte_pktmbuf_alloc_bulk(mp, mbufs, count);
}

void shake_pktmbuf_free(struct rte_mbuf *m)
{
	rte_pktmbuf_free(m);
}

unsigned int shake_ring_enqueue_burst(struct rte_ring *r, void *const *obj_table, unsigned int n,
				      unsigned int *free_space)
{
	return rte_ring_enqueue_burst(r, obj_table, n, free_space);
}

unsigned int shake_ring_dequeue_burst(struct rte_ring *r, void **obj_table, unsigned int n,
				      unsigned int *available)
{
	return rte_ring_dequeue_burst(r, obj_table, n, available);
}

unsigned int shake_ring_count(const struct rte_ring *r)
{
	return rte_ring_count(r);
}

uint64_t shake_rdtsc(void)
{
	return rte_rdtsc();
}

uint64_t shake_get_tsc_hz(void)
{
	return rte_get_tsc_hz();
}

void shake_prefetch0(const void *p)
{
	rte_prefetch0(p);
}

int shake_errno(void)
{
	return rte_errno;
}
