/*
 * Input to bindgen (see build.rs): the DPDK 22.11 headers this crate binds, plus the
 * declarations of the C shim that re-exports DPDK's `static inline` functions.
 * rte_config.h is force-included by the `-include rte_config.h` from `pkg-config --cflags`.
 */
#include <rte_common.h>
#include <rte_version.h>
#include <rte_errno.h>
#include <rte_eal.h>
#include <rte_lcore.h>
#include <rte_launch.h>
#include <rte_cycles.h>
#include <rte_memory.h>
#include <rte_malloc.h>
#include <rte_mempool.h>
#include <rte_mbuf.h>
#include <rte_mbuf_pool_ops.h>
#include <rte_ring.h>
#include <rte_ether.h>
#include <rte_ethdev.h>
#include <rte_thash.h>
#include <rte_dev.h>
#include <rte_eth_ring.h>

#include "shim.h"
