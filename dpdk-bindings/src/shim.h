/*
 * C shim: out-of-line wrappers around DPDK's `static inline` functions and macros, which
 * bindgen cannot bind (they have no symbol in any shared library). Each wrapper is one
 * call to the DPDK function of the same name without the `shim_` prefix; no logic lives
 * here. Compiled by build.rs with the `cc` crate and the flags from `pkg-config --cflags
 * libdpdk`.
 */
#ifndef DPDK_BINDINGS_SHIM_H
#define DPDK_BINDINGS_SHIM_H

#include <stdint.h>

struct rte_mbuf;
struct rte_mempool;
struct rte_ring;

/* rte_ethdev.h */
uint16_t shim_rte_eth_rx_burst(uint16_t port_id, uint16_t queue_id,
			       struct rte_mbuf **rx_pkts, uint16_t nb_pkts);
uint16_t shim_rte_eth_tx_burst(uint16_t port_id, uint16_t queue_id,
			       struct rte_mbuf **tx_pkts, uint16_t nb_pkts);

/* rte_mbuf.h */
struct rte_mbuf *shim_rte_pktmbuf_alloc(struct rte_mempool *mp);
int shim_rte_pktmbuf_alloc_bulk(struct rte_mempool *pool, struct rte_mbuf **mbufs,
				unsigned int count);
void shim_rte_pktmbuf_free(struct rte_mbuf *m);
char *shim_rte_pktmbuf_append(struct rte_mbuf *m, uint16_t len);
char *shim_rte_pktmbuf_prepend(struct rte_mbuf *m, uint16_t len);
char *shim_rte_pktmbuf_adj(struct rte_mbuf *m, uint16_t len);
int shim_rte_pktmbuf_trim(struct rte_mbuf *m, uint16_t len);
int shim_rte_pktmbuf_linearize(struct rte_mbuf *m);
uint16_t shim_rte_pktmbuf_headroom(const struct rte_mbuf *m);
uint16_t shim_rte_pktmbuf_tailroom(const struct rte_mbuf *m);
uint16_t shim_rte_mbuf_refcnt_read(const struct rte_mbuf *m);

/* rte_lcore.h, rte_errno.h (per-lcore thread-local variables) */
unsigned int shim_rte_lcore_id(void);
int shim_rte_errno(void);
void shim_rte_errno_set(int value);

/* rte_cycles.h */
uint64_t shim_rte_rdtsc(void);

/* sys/mman.h: madvise(MADV_HUGEPAGE); 0 or errno. Not DPDK, but C, so here. */
int shim_madvise_hugepage(void *addr, size_t len);

/* rte_ring.h */
unsigned int shim_rte_ring_enqueue_burst(struct rte_ring *r, void *const *obj_table,
					 unsigned int n, unsigned int *free_space);
unsigned int shim_rte_ring_dequeue_burst(struct rte_ring *r, void **obj_table,
					 unsigned int n, unsigned int *available);
unsigned int shim_rte_ring_count(const struct rte_ring *r);
unsigned int shim_rte_ring_free_count(const struct rte_ring *r);
unsigned int shim_rte_ring_get_capacity(const struct rte_ring *r);

/* rte_thash.h */
uint32_t shim_rte_softrss(uint32_t *input_tuple, uint32_t input_len, const uint8_t *rss_key);
uint32_t shim_rte_softrss_be(uint32_t *input_tuple, uint32_t input_len,
			     const uint8_t *rss_key);
void shim_rte_convert_rss_key(const uint32_t *orig, uint32_t *targ, int len);

/* Not DPDK: whether the shared object `soname` is loaded in this process
 * (dlopen RTLD_NOLOAD). Used to tell "driver not registered" from "probe failed". */
int shim_dso_loaded(const char *soname);

#endif
