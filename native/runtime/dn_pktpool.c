#include <rte_errno.h>
#include <rte_ether.h>
#include <rte_mbuf.h>

#include "dn_error.h"
#include "dn_pktpool.h"

#define DN_POOL_CACHE 256

int
dn_pktpool_create(const char *name, unsigned int n, uint16_t priv_size,
	uint16_t data_room, struct rte_mempool **pool)
{
	*pool = rte_pktmbuf_pool_create(name, n, DN_POOL_CACHE,
		RTE_ALIGN(priv_size, RTE_MBUF_PRIV_ALIGN),
		(uint16_t)(data_room + RTE_PKTMBUF_HEADROOM), SOCKET_ID_ANY);
	if (*pool == NULL)
		return dn_error(-rte_errno, "cannot create mbuf pool %s "
			"(%u buffers): %s", name, n, rte_strerror(rte_errno));
	return 0;
}

uint16_t
dn_frame_room(uint16_t mtu)
{
	uint32_t frame = (uint32_t)mtu + RTE_ETHER_HDR_LEN + RTE_VLAN_HLEN;

	return (uint16_t)RTE_ALIGN_CEIL(frame, 1024);
}
