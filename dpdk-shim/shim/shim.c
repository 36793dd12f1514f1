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

uint16_t shake_eth_tx_prepare(uint16_t port_id, uint16_t queue_id, struct rte_mbuf **tx_pkts,
			      uint16_t nb_pkts)
{
	return rte_eth_tx_prepare(port_id, queue_id, tx_pkts, nb_pkts);
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

uint8_t *shake_pktmbuf_mtod(struct rte_mbuf *m)
{
	return rte_pktmbuf_mtod(m, uint8_t *);
}

uint16_t shake_pktmbuf_data_len(const struct rte_mbuf *m)
{
	return rte_pktmbuf_data_len(m);
}

void shake_pktmbuf_set_data_len(struct rte_mbuf *m, uint16_t len)
{
	m->data_len = len;
}

uint32_t shake_pktmbuf_pkt_len(const struct rte_mbuf *m)
{
	return rte_pktmbuf_pkt_len(m);
}

void shake_pktmbuf_set_pkt_len(struct rte_mbuf *m, uint32_t len)
{
	m->pkt_len = len;
}

uint16_t shake_pktmbuf_headroom(const struct rte_mbuf *m)
{
	return rte_pktmbuf_headroom(m);
}

uint16_t shake_pktmbuf_tailroom(const struct rte_mbuf *m)
{
	return rte_pktmbuf_tailroom(m);
}

char *shake_pktmbuf_append(struct rte_mbuf *m, uint16_t len)
{
	return rte_pktmbuf_append(m, len);
}

char *shake_pktmbuf_prepend(struct rte_mbuf *m, uint16_t len)
{
	return rte_pktmbuf_prepend(m, len);
}

char *shake_pktmbuf_adj(struct rte_mbuf *m, uint16_t len)
{
	return rte_pktmbuf_adj(m, len);
}

int shake_pktmbuf_trim(struct rte_mbuf *m, uint16_t len)
{
	return rte_pktmbuf_trim(m, len);
}

void shake_pktmbuf_reset_headroom(struct rte_mbuf *m)
{
	rte_pktmbuf_reset_headroom(m);
}

void shake_pktmbuf_reset(struct rte_mbuf *m)
{
	rte_pktmbuf_reset(m);
}

uint16_t shake_mbuf_port(const struct rte_mbuf *m)
{
	return m->port;
}

uint64_t shake_mbuf_ol_flags(const struct rte_mbuf *m)
{
	return m->ol_flags;
}

void shake_mbuf_set_ol_flags(struct rte_mbuf *m, uint64_t ol_flags)
{
	m->ol_flags = ol_flags;
}

void shake_mbuf_set_l2_len(struct rte_mbuf *m, uint16_t len)
{
	m->l2_len = len;
}

void shake_mbuf_set_l3_len(struct rte_mbuf *m, uint16_t len)
{
	m->l3_len = len;
}

void shake_mbuf_set_l4_len(struct rte_mbuf *m, uint16_t len)
{
	m->l4_len = len;
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

unsigned int shake_lcore_id(void)
{
	return rte_lcore_id();
}

uint64_t shake_rdtsc(void)
{
	return rte_rdtsc();
}

uint64_t shake_get_tsc_cycles(void)
{
	return rte_get_tsc_cycles();
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
